//! `arenalm chat`: an interactive conversation that stays in the KV cache.
//!
//! The engine's cache always holds the tokens of `kv_text`, a prefix of the
//! formatted conversation. A new turn formats the whole conversation with the
//! assistant's opener, evaluates only the text beyond `kv_text`, and streams
//! the reply until an end-of-generation token. If a template ever renders
//! earlier turns differently (so `kv_text` is no longer a prefix), the
//! conversation is evaluated again from an empty cache.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use arenalm_core::engine::Outputs;
use arenalm_core::sample::Sampler;
use arenalm_core::tokenizer::chat::{ChatFamily, ChatMessage, ChatTemplate, Role};
use arenalm_core::tokenizer::Detokenizer;

use crate::common::mib;
use crate::run::{leak_model, tokenize, EngineArgs, SampleArgs, Session};

/// User input: an editor with history on a terminal, plain lines otherwise.
enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Lines(std::io::Lines<std::io::StdinLock<'static>>),
}

impl Input {
    fn new() -> Input {
        if std::io::stdin().is_terminal() {
            if let Ok(ed) = rustyline::DefaultEditor::new() {
                return Input::Editor(Box::new(ed));
            }
        }
        Input::Lines(std::io::stdin().lock().lines())
    }

    /// The next line, or `None` at end of input.
    fn next(&mut self) -> Result<Option<String>, String> {
        match self {
            Input::Editor(ed) => match ed.readline("> ") {
                Ok(l) => {
                    let _ = ed.add_history_entry(l.as_str());
                    Ok(Some(l))
                }
                Err(
                    rustyline::error::ReadlineError::Eof
                    | rustyline::error::ReadlineError::Interrupted,
                ) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            Input::Lines(lines) => match lines.next() {
                Some(Ok(l)) => Ok(Some(l)),
                Some(Err(e)) => Err(e.to_string()),
                None => Ok(None),
            },
        }
    }
}

struct Turn {
    role: Role,
    content: String,
}

fn format(t: &ChatTemplate<'_>, turns: &[Turn], gen_prompt: bool) -> Result<String, String> {
    let msgs: Vec<ChatMessage<'_>> = turns
        .iter()
        .map(|m| ChatMessage {
            role: m.role,
            content: &m.content,
        })
        .collect();
    let mut buf = vec![0u8; 4096];
    loop {
        match t.format(&msgs, gen_prompt, &mut buf) {
            Ok(n) => return String::from_utf8(buf[..n].to_vec()).map_err(|e| e.to_string()),
            Err(arenalm_core::Error::Tokenizer(
                arenalm_core::error::TokenizerError::BufferTooSmall { needed },
            )) => buf.resize(needed, 0),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Runs the subcommand: reads user turns from stdin (line editing on a
/// terminal), `/reset` and `/stats` commands, ends on EOF or `/quit`.
pub fn run(
    a: &EngineArgs,
    system: Option<&str>,
    template: Option<&str>,
    n_predict: u32,
    s: &SampleArgs,
) -> Result<(), String> {
    let bytes = leak_model(&a.model)?;
    let session = Session::new(bytes, a, 1)?;
    let engine = session.engine;
    let par = session.threads.get();
    let tpl = {
        let tok = engine.require_tokenizer().map_err(|e| e.to_string())?;
        match template {
            Some(name) => ChatTemplate::from_family(
                ChatFamily::from_name(name)
                    .ok_or_else(|| format!("unknown chat template family {name:?}"))?,
            ),
            None => {
                let src = tok
                    .chat_template()
                    .ok_or("the model has no chat template; name one with --template")?;
                ChatTemplate::detect(src).map_err(|e| format!("{e} (use --template NAME)"))?
            }
        }
    };
    let mut sampler = Sampler::new(s.params()).map_err(|e| e.to_string())?;
    let mut turns: Vec<Turn> = Vec::new();
    if let Some(sys) = system {
        turns.push(Turn {
            role: Role::System,
            content: sys.to_string(),
        });
    }
    let mut kv_text = String::new();
    let mut last_speed = (0usize, 0f64, 0usize, 0f64);
    let mut input = Input::new();
    let stdout = std::io::stdout();
    eprintln!(
        "chat with {} ({} template, context {} tokens). /reset, /stats, /quit; end with EOF.",
        a.model,
        tpl.family().name(),
        engine.ctx_capacity()
    );
    while let Some(line) = input.next()? {
        let line = line.trim_end_matches(['\r', '\n']);
        match line.trim() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                engine.reset().map_err(|e| e.to_string())?;
                sampler.reset();
                turns.retain(|t| t.role == Role::System);
                kv_text.clear();
                eprintln!("(conversation reset)");
                continue;
            }
            "/stats" => {
                let (pn, ps, gn, gs) = last_speed;
                eprintln!(
                    "context: {} of {} tokens; arena {} of {} bytes ({} MiB); last turn: {pn} prompt tokens at {:.1} t/s, {gn} reply tokens at {:.1} t/s",
                    engine.n_past(),
                    engine.ctx_capacity(),
                    engine.arena_used(),
                    session.arena_bytes,
                    mib(session.arena_bytes as u64),
                    pn as f64 / ps.max(1e-9),
                    gn as f64 / gs.max(1e-9),
                );
                continue;
            }
            _ => {}
        }
        turns.push(Turn {
            role: Role::User,
            content: line.to_string(),
        });
        let full = format(&tpl, &turns, true)?;
        let (delta, fresh) = match full.strip_prefix(kv_text.as_str()) {
            Some(d) => (d.to_string(), kv_text.is_empty()),
            None => {
                engine.reset().map_err(|e| e.to_string())?;
                (full.clone(), true)
            }
        };
        let tokens = tokenize(
            engine.require_tokenizer().map_err(|e| e.to_string())?,
            &delta,
            fresh,
        )?;
        if engine.n_past() + tokens.len() >= engine.ctx_capacity() {
            turns.pop();
            eprintln!(
                "(context full: {} + {} tokens exceed {}; /reset to start over)",
                engine.n_past(),
                tokens.len(),
                engine.ctx_capacity()
            );
            continue;
        }
        let t0 = Instant::now();
        engine
            .eval(par, &tokens, Outputs::Last)
            .map_err(|e| e.to_string())?;
        let prompt_secs = t0.elapsed().as_secs_f64();
        kv_text = full;

        let mut out = stdout.lock();
        let mut reply = Vec::new();
        let mut detok = Detokenizer::new(false);
        let mut piece = [0u8; 256];
        let t1 = Instant::now();
        let mut n_gen = 0;
        for _ in 0..n_predict {
            let tok = engine.sample(&mut sampler).map_err(|e| e.to_string())?;
            sampler.accept(tok);
            let t = engine.require_tokenizer().map_err(|e| e.to_string())?;
            if t.is_eog(tok) {
                break;
            }
            n_gen += 1;
            let n = detok.push(t, tok, &mut piece).map_err(|e| e.to_string())?;
            reply.extend_from_slice(&piece[..n]);
            let _ = out.write_all(&piece[..n]);
            let _ = out.flush();
            if engine.n_past() + 1 >= engine.ctx_capacity() {
                eprintln!("\n(context full)");
                break;
            }
            engine
                .eval(par, &[tok], Outputs::Last)
                .map_err(|e| e.to_string())?;
        }
        let n = detok.finish(&mut piece).map_err(|e| e.to_string())?;
        reply.extend_from_slice(&piece[..n]);
        let _ = out.write_all(&piece[..n]);
        let _ = writeln!(out);
        let _ = out.flush();
        drop(out);
        last_speed = (tokens.len(), prompt_secs, n_gen, t1.elapsed().as_secs_f64());
        let reply = String::from_utf8_lossy(&reply).into_owned();
        // The cache now holds the reply's tokens after the assistant opener.
        kv_text.push_str(&reply);
        turns.push(Turn {
            role: Role::Assistant,
            content: reply,
        });
    }
    Ok(())
}
