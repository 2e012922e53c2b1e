//! Chat templates: detection from real template texts and formatting, with
//! expected strings derived by hand from each template's text.

mod common;

use arenalm_core::error::{Error, TokenizerError};
use arenalm_core::tokenizer::{format_chat, ChatFamily, ChatMessage, ChatTemplate, Role};
use common::*;

fn msg(role: Role, content: &str) -> ChatMessage<'_> {
    ChatMessage { role, content }
}

fn render(t: &ChatTemplate<'_>, msgs: &[ChatMessage<'_>], gen: bool) -> String {
    let mut buf = vec![0u8; 4096];
    let n = t.format(msgs, gen, &mut buf).expect("format");
    String::from_utf8(buf[..n].to_vec()).expect("utf8")
}

/// system, user, assistant (with spaces around), user.
fn conversation() -> [ChatMessage<'static>; 4] {
    [
        msg(Role::System, "You are terse."),
        msg(Role::User, "Hi"),
        msg(Role::Assistant, " Hello! "),
        msg(Role::User, "Why?"),
    ]
}

fn fam(f: ChatFamily, gen: bool) -> String {
    render(&ChatTemplate::from_family(f), &conversation(), gen)
}

#[test]
fn smollm2_template_from_gguf_inserts_its_default_system_prompt() {
    let tok = shared(SMOLLM2).lock().unwrap();
    let src = tok.chat_template().expect("SmolLM2 has a chat template");
    let t = ChatTemplate::detect(src).expect("recognised");
    assert_eq!(t.family(), ChatFamily::ChatMl);
    assert!(t.has_default_system_prompt());
    // The template: if the first message is not a system message, emit
    // '<|im_start|>system\nYou are a helpful AI assistant named SmolLM,
    // trained by Hugging Face<|im_end|>\n'; then per message
    // '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n'; then
    // '<|im_start|>assistant\n' for the generation prompt. That is exactly
    // the reference `chat` prompt llama.cpp was given:
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reference_dir().join("logits-q8_0.json")).unwrap(),
    )
    .unwrap();
    let want = v["prompts"]["chat"]["text"].as_str().unwrap();
    let got = render(
        &t,
        &[msg(Role::User, "What is the capital of France?")],
        true,
    );
    assert_eq!(got, want);
    // With a system message of its own, no default is inserted.
    let got = render(
        &t,
        &[msg(Role::System, "Be brief."), msg(Role::User, "Hi")],
        false,
    );
    assert_eq!(
        got,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
    // No messages: the loop never runs, so nothing but the prompt opener.
    assert_eq!(render(&t, &[], true), "<|im_start|>assistant\n");
}

#[test]
fn gemma_format_matches_the_gemma3_reference_prompt() {
    // Gemma's template: '<start_of_turn>' + ('model' for the assistant, else
    // the role) + '\n' + content|trim + '<end_of_turn>\n', then
    // '<start_of_turn>model\n'; `{{ bos_token }}` is the caller's BOS. The
    // reference chat prompt was tokenized with BOS added.
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reference_dir().join("logits-gemma3.json")).unwrap(),
    )
    .unwrap();
    let want = v["prompts"]["chat"]["text"].as_str().unwrap();
    let mut buf = [0u8; 256];
    let n = format_chat(
        ChatFamily::Gemma,
        &[msg(Role::User, "What is the capital of France?")],
        true,
        &mut buf,
    )
    .unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), want);
    // And it tokenizes (BOS + parse_special) to the reference ids.
    let mut tok = shared(GEMMA3).lock().unwrap();
    let mut ids = vec![tok.bos().unwrap()];
    ids.extend(encode(&mut tok, want, true));
    let want_ids: Vec<u32> = v["prompts"]["chat"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(ids, want_ids);
}

// Real template texts (Gemma 2 from google/gemma-2-2b-it, the others as
// published with their models), each detected as its family.
const GEMMA2: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const QWEN25_HEAD: &str = "{%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}";
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";
const PHI3: &str = "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";
// Zephyr as llama.cpp recognises it: `<|user|>` and `<|endoftext|>` (a
// template that also spells `<|assistant|>` is claimed by Falcon 3 first).
const ZEPHYR: &str = "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|endoftext|>\n' }}{% else %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|endoftext|>\n' }}{% endif %}{% endfor %}";
const LLAMA2_OLD_MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";
const LLAMA2_SYS_STRIP: &str = "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}{% endfor %}";
const LLAMA2_SYS_BOS: &str = "{%- if messages[idx]['role'] == 'user' -%}{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}{% elif messages[idx]['role'] == 'system' %}{{- '[INST] <<SYS>>\\n' + messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}{% endif %}";
const MISTRAL_V7: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}";
const MISTRAL_V1: &str = "{%- if message['role'] == 'user' %}{%- if loop.first and system_message is defined %}{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}{%- else %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- endif %}{%- endif %}";

#[test]
fn detection_follows_llama_cpp_substring_rules() {
    let cases = [
        (GEMMA2, ChatFamily::Gemma),
        (CHATML, ChatFamily::ChatMl),
        (QWEN25_HEAD, ChatFamily::ChatMl),
        (LLAMA3, ChatFamily::Llama3),
        (PHI3, ChatFamily::Phi3),
        (ZEPHYR, ChatFamily::Zephyr),
        (LLAMA2_OLD_MISTRAL, ChatFamily::Llama2),
        (LLAMA2_SYS_STRIP, ChatFamily::Llama2SysStrip),
        (LLAMA2_SYS_BOS, ChatFamily::Llama2SysBos),
        ("{{ '[INST] <<SYS>>\\n' }}", ChatFamily::Llama2Sys),
        (MISTRAL_V7, ChatFamily::MistralV7),
        (MISTRAL_V1, ChatFamily::MistralV1),
        ("chatml", ChatFamily::ChatMl),
        ("mistral-v3-tekken", ChatFamily::MistralV3Tekken),
    ];
    for (src, want) in cases {
        assert_eq!(ChatFamily::detect(src).unwrap(), want, "{src}");
    }
    // Qwen2.5's default system turn is found; plain ChatML has none.
    let q = ChatTemplate::detect(QWEN25_HEAD).unwrap();
    assert!(q.has_default_system_prompt());
    assert_eq!(
        render(&q, &[msg(Role::User, "Hi")], false),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful \
         assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
    assert!(!ChatTemplate::detect(CHATML)
        .unwrap()
        .has_default_system_prompt());
    for bad in [
        "{{ messages }}",
        "{{ '<|im_start|>' + role + '<|im_sep|>' }}", // Phi-4
        "{{ '<|user|>' }}{{ '<|assistant|>' }}",      // Falcon 3 / GLM-Edge
        "",
    ] {
        assert_eq!(
            ChatFamily::detect(bad).unwrap_err(),
            Error::Tokenizer(TokenizerError::UnknownChatTemplate),
            "{bad:?}"
        );
    }
    assert_eq!(ChatFamily::from_name("gemma"), Some(ChatFamily::Gemma));
    assert_eq!(ChatFamily::from_name("nope"), None);
    for f in [
        ChatFamily::Llama2SysBos,
        ChatFamily::Zephyr,
        ChatFamily::MistralV7Tekken,
    ] {
        assert_eq!(ChatFamily::from_name(f.name()), Some(f));
    }
}

// Expected strings for conversation(): [system "You are terse.", user "Hi",
// assistant " Hello! ", user "Why?"], derived from each template's text.
#[test]
fn every_family_formats_as_its_template_renders() {
    // ChatML: '<|im_start|>' + role + '\n' + content + '<|im_end|>\n' per
    // message (content untouched), then '<|im_start|>assistant\n'.
    assert_eq!(
        fam(ChatFamily::ChatMl, true),
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    // Llama 3: header + '\n\n' + content|trim + '<|eot_id|>'; the prompt
    // opener is an assistant header.
    assert_eq!(
        fam(ChatFamily::Llama3, true),
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    // Llama 2 without system support: '[INST] ' opens; the system text is
    // written plainly with '\n'; a user turn closes with ' [/INST]'; the
    // reply is followed by '</s>' and the next user turn reopens '[INST] '.
    // The generation prompt adds nothing (the template has none).
    assert_eq!(
        fam(ChatFamily::Llama2, true),
        "[INST] You are terse.\nHi [/INST] Hello! </s>[INST] Why? [/INST]"
    );
    // With <<SYS>>: the system text is wrapped in '<<SYS>>\n' .. '\n<</SYS>>\n\n'.
    assert_eq!(
        fam(ChatFamily::Llama2Sys, false),
        "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello! </s>[INST] Why? [/INST]"
    );
    // bos_token + '[INST] ' for turns after the first.
    assert_eq!(
        fam(ChatFamily::Llama2SysBos, false),
        "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Why? [/INST]"
    );
    // content.strip() on every message.
    assert_eq!(
        fam(ChatFamily::Llama2SysStrip, false),
        "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] Why? [/INST]"
    );
    // Mistral v1: ' [INST] ' + system + '\n\n' + user + ' [/INST]', reply as
    // ' ' + content + '</s>'.
    assert_eq!(
        fam(ChatFamily::MistralV1, false),
        " [INST] You are terse.\n\nHi [/INST]  Hello! </s> [INST] Why? [/INST]"
    );
    // Mistral v3: '[INST] ' + system + '\n\n' + user + '[/INST]', reply
    // ' ' + content|trim + '</s>'.
    assert_eq!(
        fam(ChatFamily::MistralV3, false),
        "[INST] You are terse.\n\nHi[/INST] Hello!</s>[INST] Why?[/INST]"
    );
    // Tekken: no space after '[INST]' nor before the reply.
    assert_eq!(
        fam(ChatFamily::MistralV3Tekken, false),
        "[INST]You are terse.\n\nHi[/INST] Hello! </s>[INST]Why?[/INST]"
    );
    // v7: '[SYSTEM_PROMPT] ' .. '[/SYSTEM_PROMPT]', '[INST] ' .. '[/INST]',
    // reply ' ' + content + '</s>'.
    assert_eq!(
        fam(ChatFamily::MistralV7, false),
        "[SYSTEM_PROMPT] You are terse.[/SYSTEM_PROMPT][INST] Hi[/INST]  Hello! </s>[INST] Why?[/INST]"
    );
    // Phi-3: '<|' + role + '|>\n' + content + '<|end|>\n', then '<|assistant|>\n'.
    assert_eq!(
        fam(ChatFamily::Phi3, true),
        "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n Hello! <|end|>\n\
         <|user|>\nWhy?<|end|>\n<|assistant|>\n"
    );
    // Zephyr: as Phi-3 with '<|endoftext|>'.
    assert_eq!(
        fam(ChatFamily::Zephyr, true),
        "<|system|>\nYou are terse.<|endoftext|>\n<|user|>\nHi<|endoftext|>\n<|assistant|>\n Hello! \
         <|endoftext|>\n<|user|>\nWhy?<|endoftext|>\n<|assistant|>\n"
    );
    // Gemma: no system role; the system text opens the first user turn,
    // followed by '\n\n'; 'model' for the assistant; contents trimmed.
    assert_eq!(
        fam(ChatFamily::Gemma, true),
        "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn short_buffer_reports_the_exact_size_needed() {
    let msgs = conversation();
    let full = fam(ChatFamily::ChatMl, true);
    for len in [0, 1, full.len() - 1] {
        let mut buf = vec![0u8; len];
        assert_eq!(
            format_chat(ChatFamily::ChatMl, &msgs, true, &mut buf).unwrap_err(),
            Error::Tokenizer(TokenizerError::BufferTooSmall { needed: full.len() })
        );
    }
    let mut buf = vec![0u8; full.len()];
    assert_eq!(
        format_chat(ChatFamily::ChatMl, &msgs, true, &mut buf).unwrap(),
        full.len()
    );
}
