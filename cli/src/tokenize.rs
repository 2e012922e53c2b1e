//! `arenalm tokenize`: token ids of a text, from any GGUF whose tokenizer
//! arenalm supports (the architecture need not be runnable).

use arenalm_core::gguf::Gguf;
use arenalm_core::mem::Arena;
use arenalm_core::tokenizer::{Tokenizer, TokenizerOptions};

use crate::common::{map_model, ArenaBuf};

/// Runs the subcommand.
pub fn run(
    model: &str,
    text: &str,
    parse_special: bool,
    bos: bool,
    json: bool,
    pieces: bool,
) -> Result<(), String> {
    let map = map_model(model)?;
    let g = Gguf::parse(map.bytes()).map_err(|e| format!("{model}: {e}"))?;
    let opts = TokenizerOptions::default();
    let need = Tokenizer::arena_bytes(&g, &opts).map_err(|e| format!("{model}: {e}"))?;
    let mut buf = ArenaBuf::new(need)?;
    let mut arena = Arena::new(buf.bytes());
    let mut tok = Tokenizer::new(&g, &mut arena, &opts).map_err(|e| format!("{model}: {e}"))?;
    let mut ids = vec![0u32; text.len() + 1];
    let start = match (bos, tok.bos()) {
        (true, Some(b)) => {
            ids[0] = b;
            1
        }
        _ => 0,
    };
    let n = tok
        .encode(text, parse_special, &mut ids[start..])
        .map_err(|e| e.to_string())?;
    ids.truncate(start + n);
    if json {
        println!(
            "{}",
            serde_json::to_string(&ids).map_err(|e| e.to_string())?
        );
    } else if pieces {
        let mut piece = vec![0u8; 1024];
        for &id in &ids {
            let k = tok
                .token_to_piece(id, true, &mut piece)
                .map_err(|e| e.to_string())?;
            println!("{id:>7} {:?}", String::from_utf8_lossy(&piece[..k]));
        }
    } else {
        let line: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        println!("{}", line.join(" "));
    }
    eprintln!("{} tokens", ids.len());
    Ok(())
}
