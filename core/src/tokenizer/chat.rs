//! Chat templates: recognise a GGUF `tokenizer.chat_template` as one of the
//! families llama.cpp knows (`llm_chat_detect_template`, same substring
//! tests in the same order) and format messages the way the family's
//! template renders them, into a caller buffer.
//!
//! Formatting follows llama.cpp's built-in formatters (`llm_chat_apply_template`),
//! which reproduce the templates' Jinja output for ordinary conversations,
//! plus one thing llama.cpp's ChatML formatter skips: a default system prompt
//! the template inserts when the conversation has none (SmolLM2's
//! "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
//! Qwen2.5's "You are Qwen, …"). It is read from the template itself: a
//! string literal that is a whole `<|im_start|>system\n…<|im_end|>` turn.
//!
//! A template's leading `{{ bos_token }}` is not rendered: the caller adds
//! BOS when [`super::Tokenizer::add_bos`] says so, as llama.cpp does, so the
//! output is meant to be encoded with `parse_special = true` after BOS.

use crate::error::{Error, Result, TokenizerError};

/// Who says a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatMessage<'m> {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: &'m str,
}

/// The template families arenalm formats (llama.cpp's names in parentheses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFamily {
    /// `<|im_start|>role\n…<|im_end|>\n` (`chatml`): SmolLM2, Qwen, Hermes.
    ChatMl,
    /// Llama 3 headers and `<|eot_id|>` (`llama3`).
    Llama3,
    /// `[INST] … [/INST]`, system folded into the first turn (`llama2`).
    Llama2,
    /// Llama 2 with `<<SYS>>` blocks (`llama2-sys`).
    Llama2Sys,
    /// Llama 2 with `<<SYS>>` and `<s>` before later turns (`llama2-sys-bos`).
    Llama2SysBos,
    /// Llama 2 with `<<SYS>>` and trimmed messages (`llama2-sys-strip`).
    Llama2SysStrip,
    /// Mistral v1 (`mistral-v1`): ` [INST] … [/INST]`.
    MistralV1,
    /// Mistral v3 (`mistral-v3`): `[INST] … [/INST]`, trimmed replies.
    MistralV3,
    /// Mistral v3 Tekken (`mistral-v3-tekken`): no spaces around markers.
    MistralV3Tekken,
    /// Mistral v7 (`mistral-v7`): `[SYSTEM_PROMPT]` blocks.
    MistralV7,
    /// Mistral v7 Tekken (`mistral-v7-tekken`).
    MistralV7Tekken,
    /// Phi-3 (`phi3`): `<|role|>\n…<|end|>\n`.
    Phi3,
    /// Zephyr (`zephyr`): `<|role|>\n…<|endoftext|>\n`.
    Zephyr,
    /// Gemma (`gemma`): `<start_of_turn>user|model`, system folded into the
    /// next user turn.
    Gemma,
}

const NAMES: &[(&str, ChatFamily)] = &[
    ("chatml", ChatFamily::ChatMl),
    ("llama3", ChatFamily::Llama3),
    ("llama2", ChatFamily::Llama2),
    ("llama2-sys", ChatFamily::Llama2Sys),
    ("llama2-sys-bos", ChatFamily::Llama2SysBos),
    ("llama2-sys-strip", ChatFamily::Llama2SysStrip),
    ("mistral-v1", ChatFamily::MistralV1),
    ("mistral-v3", ChatFamily::MistralV3),
    ("mistral-v3-tekken", ChatFamily::MistralV3Tekken),
    ("mistral-v7", ChatFamily::MistralV7),
    ("mistral-v7-tekken", ChatFamily::MistralV7Tekken),
    ("phi3", ChatFamily::Phi3),
    ("zephyr", ChatFamily::Zephyr),
    ("gemma", ChatFamily::Gemma),
];

impl ChatFamily {
    /// The family llama.cpp calls `name` (`chatml`, `llama3`, `gemma`, …).
    pub fn from_name(name: &str) -> Option<ChatFamily> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// llama.cpp's name for the family.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(n, _)| n)
    }

    /// The family of a Jinja template, by llama.cpp's substring tests (in
    /// its order, so a template another family claims first is refused).
    pub fn detect(template: &str) -> Result<ChatFamily> {
        let unknown = Err(Error::Tokenizer(TokenizerError::UnknownChatTemplate));
        if let Some(f) = ChatFamily::from_name(template) {
            return Ok(f);
        }
        let has = |s: &str| template.contains(s);
        if has("<|im_start|>") {
            // Phi-4 (`<|im_sep|>`) and SmolVLM reuse the marker but differ.
            return if has("<|im_sep|>") || has("<end_of_utterance>") {
                unknown
            } else {
                Ok(ChatFamily::ChatMl)
            };
        }
        if template.starts_with("mistral") || has("[INST]") {
            if has("[SYSTEM_PROMPT]") {
                return Ok(ChatFamily::MistralV7);
            }
            if has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]") {
                return Ok(if has(" [INST]") {
                    ChatFamily::MistralV1
                } else if has("\"[INST]\"") {
                    ChatFamily::MistralV3Tekken
                } else {
                    ChatFamily::MistralV3
                });
            }
            return Ok(if has("content.strip()") {
                ChatFamily::Llama2SysStrip
            } else if has("bos_token + '[INST]") {
                ChatFamily::Llama2SysBos
            } else if has("<<SYS>>") {
                ChatFamily::Llama2Sys
            } else {
                ChatFamily::Llama2
            });
        }
        if has("<|assistant|>") && has("<|end|>") {
            return Ok(ChatFamily::Phi3);
        }
        // ChatGLM 4, Falcon 3 / GLM-Edge and Monarch come before Zephyr and
        // Gemma in llama.cpp's order; we do not format them.
        if has("[gMASK]<sop>")
            || (has("<|assistant|>") && has("<|user|>"))
            || (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>"))
        {
            return unknown;
        }
        if has("<|user|>") && has("<|endoftext|>") {
            return Ok(ChatFamily::Zephyr);
        }
        if has("bos_token + message['role']") {
            return unknown;
        }
        if has("<start_of_turn>") {
            return Ok(ChatFamily::Gemma);
        }
        // Orion, OpenChat, Vicuna, DeepSeek Coder, Command-R precede Llama 3.
        if has("'\\n\\nAssistant: ' + eos_token")
            || has("GPT4 Correct ")
            || (has("USER: ") && has("ASSISTANT: "))
            || (has("### Instruction:") && has("<|EOT|>"))
            || (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>"))
        {
            return unknown;
        }
        if has("<|start_header_id|>") && has("<|end_header_id|>") {
            return Ok(ChatFamily::Llama3);
        }
        unknown
    }
}

/// A recognised template: its family and, for ChatML, the default system
/// turn it inserts (a Jinja string literal, still escaped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatTemplate<'t> {
    family: ChatFamily,
    default_system: Option<&'t str>,
}

/// Jinja string literals of `template`: `(escaped content)`.
fn string_literals(template: &str) -> impl Iterator<Item = &str> {
    let b = template.as_bytes();
    let mut i = 0;
    core::iter::from_fn(move || {
        while i < b.len() {
            let q = b[i];
            if q != b'\'' && q != b'"' {
                i += 1;
                continue;
            }
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j] != q {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(b.len());
            i = end + 1;
            return template.get(start..end);
        }
        None
    })
}

/// Calls `f` with the bytes of a Jinja literal's escaped content, unescaped.
fn unescape(lit: &str, mut f: impl FnMut(&[u8])) {
    let b = lit.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let c = match b[i + 1] {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                other => other,
            };
            f(&[c]);
            i += 2;
        } else {
            // Copy the run up to the next backslash (keeps UTF-8 intact).
            let run = b[i..]
                .iter()
                .position(|&x| x == b'\\')
                .map_or(b.len(), |p| i + p.max(1));
            f(&b[i..run]);
            i = run;
        }
    }
}

fn unescaped_eq_prefix(lit: &str, prefix: &[u8]) -> bool {
    let mut pos = 0;
    let mut ok = true;
    unescape(lit, |chunk| {
        for &c in chunk {
            if pos < prefix.len() && prefix[pos] != c {
                ok = false;
            }
            pos += 1;
        }
    });
    ok && pos >= prefix.len()
}

impl<'t> ChatTemplate<'t> {
    /// Recognises `template` (a Jinja source or a family name).
    pub fn detect(template: &'t str) -> Result<ChatTemplate<'t>> {
        let family = ChatFamily::detect(template)?;
        let default_system = match family {
            ChatFamily::ChatMl => string_literals(template).find(|lit| {
                lit.contains("<|im_end|>") && unescaped_eq_prefix(lit, b"<|im_start|>system\n")
            }),
            _ => None,
        };
        Ok(ChatTemplate {
            family,
            default_system,
        })
    }

    /// A family's plain format (no default system prompt).
    pub fn from_family(family: ChatFamily) -> ChatTemplate<'static> {
        ChatTemplate {
            family,
            default_system: None,
        }
    }

    /// The family.
    pub fn family(&self) -> ChatFamily {
        self.family
    }

    /// Whether the template inserts a default system turn.
    pub fn has_default_system_prompt(&self) -> bool {
        self.default_system.is_some()
    }

    /// Formats `messages` into `out` (appending the assistant's turn opener
    /// if `add_generation_prompt`), returning the byte count, or
    /// [`TokenizerError::BufferTooSmall`] with the exact size needed.
    pub fn format(
        &self,
        messages: &[ChatMessage<'_>],
        add_generation_prompt: bool,
        out: &mut [u8],
    ) -> Result<usize> {
        self.format_iter(messages.iter().copied(), add_generation_prompt, out)
    }

    /// [`ChatTemplate::format`] over messages produced by an iterator (a
    /// caller's array converted on the fly, with nothing collected).
    pub fn format_iter<'m, I>(
        &self,
        messages: I,
        add_generation_prompt: bool,
        out: &mut [u8],
    ) -> Result<usize>
    where
        I: Iterator<Item = ChatMessage<'m>> + Clone,
    {
        let mut w = Out { buf: out, n: 0 };
        self.render(messages, add_generation_prompt, &mut w);
        if w.n > w.buf.len() {
            return Err(Error::Tokenizer(TokenizerError::BufferTooSmall {
                needed: w.n,
            }));
        }
        Ok(w.n)
    }

    fn render<'m, I>(&self, messages: I, gen: bool, w: &mut Out<'_>)
    where
        I: Iterator<Item = ChatMessage<'m>> + Clone,
    {
        use ChatFamily as F;
        match self.family {
            F::ChatMl => {
                if let (Some(lit), Some(first)) = (self.default_system, messages.clone().next()) {
                    if first.role != Role::System {
                        unescape(lit, |b| w.put(b));
                    }
                }
                for m in messages {
                    w.puts(&[
                        "<|im_start|>",
                        m.role.as_str(),
                        "\n",
                        m.content,
                        "<|im_end|>\n",
                    ]);
                }
                if gen {
                    w.puts(&["<|im_start|>assistant\n"]);
                }
            }
            F::Llama3 => {
                for m in messages {
                    w.puts(&[
                        "<|start_header_id|>",
                        m.role.as_str(),
                        "<|end_header_id|>\n\n",
                        trim(m.content),
                        "<|eot_id|>",
                    ]);
                }
                if gen {
                    w.puts(&["<|start_header_id|>assistant<|end_header_id|>\n\n"]);
                }
            }
            F::Llama2 | F::Llama2Sys | F::Llama2SysBos | F::Llama2SysStrip => {
                let system_blocks = self.family != F::Llama2;
                let bos_inside = self.family == F::Llama2SysBos;
                let strip = self.family == F::Llama2SysStrip;
                let mut inside = true;
                w.puts(&["[INST] "]);
                for m in messages {
                    let content = if strip { trim(m.content) } else { m.content };
                    if !inside {
                        inside = true;
                        w.puts(&[if bos_inside { "<s>[INST] " } else { "[INST] " }]);
                    }
                    match m.role {
                        Role::System if system_blocks => {
                            w.puts(&["<<SYS>>\n", content, "\n<</SYS>>\n\n"])
                        }
                        Role::System => w.puts(&[content, "\n"]),
                        Role::User => w.puts(&[content, " [/INST]"]),
                        Role::Assistant => {
                            w.puts(&[content, "</s>"]);
                            inside = false;
                        }
                    }
                }
            }
            F::MistralV1 | F::MistralV3 | F::MistralV3Tekken => {
                let lead = if self.family == F::MistralV1 { " " } else { "" };
                let trail = if self.family == F::MistralV3Tekken {
                    ""
                } else {
                    " "
                };
                let trim_reply = self.family == F::MistralV3;
                let mut inside = false;
                for m in messages {
                    if !inside {
                        w.puts(&[lead, "[INST]", trail]);
                        inside = true;
                    }
                    match m.role {
                        Role::System => w.puts(&[m.content, "\n\n"]),
                        Role::User => w.puts(&[m.content, lead, "[/INST]"]),
                        Role::Assistant => {
                            let c = if trim_reply {
                                trim(m.content)
                            } else {
                                m.content
                            };
                            w.puts(&[trail, c, "</s>"]);
                            inside = false;
                        }
                    }
                }
            }
            F::MistralV7 | F::MistralV7Tekken => {
                let sp = if self.family == F::MistralV7 { " " } else { "" };
                for m in messages {
                    match m.role {
                        Role::System => {
                            w.puts(&["[SYSTEM_PROMPT]", sp, m.content, "[/SYSTEM_PROMPT]"])
                        }
                        Role::User => w.puts(&["[INST]", sp, m.content, "[/INST]"]),
                        Role::Assistant => w.puts(&[sp, m.content, "</s>"]),
                    }
                }
            }
            F::Phi3 | F::Zephyr => {
                let end = if self.family == F::Phi3 {
                    "<|end|>\n"
                } else {
                    "<|endoftext|>\n"
                };
                for m in messages {
                    w.puts(&["<|", m.role.as_str(), "|>\n", m.content, end]);
                }
                if gen {
                    w.puts(&["<|assistant|>\n"]);
                }
            }
            F::Gemma => {
                // System text (trimmed, concatenated) waits for the next
                // user turn and opens it, followed by a blank line.
                let mut pending: [&str; 8] = [""; 8];
                let mut n_pending = 0;
                for m in messages {
                    if m.role == Role::System {
                        if let Some(slot) = pending.get_mut(n_pending) {
                            *slot = trim(m.content);
                            n_pending += 1;
                        }
                        continue;
                    }
                    let role = if m.role == Role::Assistant {
                        "model"
                    } else {
                        "user"
                    };
                    w.puts(&["<start_of_turn>", role, "\n"]);
                    let any = pending.iter().take(n_pending).any(|p| !p.is_empty());
                    if any && role != "model" {
                        for p in pending.iter().take(n_pending) {
                            w.puts(&[p]);
                        }
                        w.puts(&["\n\n"]);
                        n_pending = 0;
                    }
                    w.puts(&[trim(m.content), "<end_of_turn>\n"]);
                }
                if gen {
                    w.puts(&["<start_of_turn>model\n"]);
                }
            }
        }
    }
}

/// Formats `messages` in `family`'s plain format (see [`ChatTemplate::format`]).
pub fn format_chat(
    family: ChatFamily,
    messages: &[ChatMessage<'_>],
    add_generation_prompt: bool,
    out: &mut [u8],
) -> Result<usize> {
    ChatTemplate::from_family(family).format(messages, add_generation_prompt, out)
}

/// C `isspace` trimming, as llama.cpp's `trim`.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
}

struct Out<'b> {
    buf: &'b mut [u8],
    n: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.n.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.n..end) {
            dst.copy_from_slice(bytes);
        }
        self.n = end;
    }

    fn puts(&mut self, parts: &[&str]) {
        for p in parts {
            self.put(p.as_bytes());
        }
    }
}
