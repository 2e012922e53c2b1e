//! The C ABI called as a C program would: NULLs, hostile bytes, budgets,
//! ownership rules and a caller-provided parallel-for.

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use arenalm::capi::*;

fn model_path() -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-model.sh",
        p.display()
    );
    p
}

fn open_model() -> *mut alm_model {
    let path = std::ffi::CString::new(model_path().to_str().unwrap()).unwrap();
    let mut m = null_mut();
    let mut err = [0 as c_char; 256];
    // SAFETY: valid path, out pointer and buffer.
    let s = unsafe { alm_model_open_file(path.as_ptr(), &mut m, err.as_mut_ptr(), err.len()) };
    assert_eq!(s, alm_status::ALM_OK);
    m
}

fn msg(err: &[c_char]) -> String {
    // SAFETY: the library NUL-terminates what it writes; the buffer starts zeroed.
    unsafe { CStr::from_ptr(err.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[repr(C, align(64))]
struct Aligned([u8; 64]);

fn arena(bytes: usize) -> Vec<Aligned> {
    (0..bytes.div_ceil(64)).map(|_| Aligned([0; 64])).collect()
}

#[test]
fn nulls_and_hostile_bytes_are_statuses_not_crashes() {
    let mut err = [0 as c_char; 256];
    let mut m = null_mut();
    // SAFETY: deliberately NULL arguments; the functions must refuse them.
    unsafe {
        assert_eq!(
            alm_model_open_bytes(null(), 10, &mut m, err.as_mut_ptr(), 256),
            alm_status::ALM_ERR_NULL_ARGUMENT
        );
        assert_eq!(
            alm_model_open_bytes(b"GGUF".as_ptr(), 4, null_mut(), null_mut(), 0),
            alm_status::ALM_ERR_NULL_ARGUMENT
        );
        let junk = b"GGUF\x03\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\0\0\0\0\0\0\0\0";
        assert_eq!(
            alm_model_open_bytes(junk.as_ptr(), junk.len(), &mut m, err.as_mut_ptr(), 256),
            alm_status::ALM_ERR_GGUF
        );
        assert!(
            msg(&err).contains("tensors exceed the cap"),
            "{}",
            msg(&err)
        );
        assert!(m.is_null());
        assert_eq!(alm_model_close(null_mut()), alm_status::ALM_OK);
        assert_eq!(alm_engine_free(null_mut()), alm_status::ALM_OK);
        assert_eq!(alm_tokenizer_free(null_mut()), alm_status::ALM_OK);
        let missing = c"/nonexistent/model.gguf";
        assert_eq!(
            alm_model_open_file(missing.as_ptr(), &mut m, err.as_mut_ptr(), 256),
            alm_status::ALM_ERR_IO
        );
        let mut info = alm_model_info::default();
        assert_eq!(
            alm_model_get_info(null(), &mut info, null_mut(), 0, null_mut(), 0),
            alm_status::ALM_ERR_NULL_ARGUMENT
        );
    }
}

#[test]
fn plan_then_create_an_engine_in_exactly_the_planned_bytes() {
    let m = open_model();
    let mut err = [0 as c_char; 256];
    // SAFETY: a live model handle, valid out structs, an arena we own.
    unsafe {
        let mut info = alm_model_info {
            size: std::mem::size_of::<alm_model_info>() as u32,
            ..Default::default()
        };
        let mut arch = [0 as c_char; 16];
        assert_eq!(
            alm_model_get_info(m, &mut info, arch.as_mut_ptr(), 16, null_mut(), 0),
            alm_status::ALM_OK
        );
        assert_eq!(
            (info.n_layers, info.vocab, info.tied_embeddings),
            (30, 49152, 1)
        );
        assert_eq!(msg(&arch), "llama");
        let mut p = std::mem::zeroed::<alm_engine_params>();
        assert_eq!(
            alm_engine_default_params(&mut p, std::mem::size_of::<alm_engine_params>()),
            alm_status::ALM_OK
        );
        p.ctx_tokens = 64;
        let mut plan = alm_memory_plan {
            size: std::mem::size_of::<alm_memory_plan>() as u32,
            ..Default::default()
        };
        assert_eq!(
            alm_plan(m, &p, &mut plan, err.as_mut_ptr(), 256),
            alm_status::ALM_OK,
            "{}",
            msg(&err)
        );
        let total = plan.total_bytes as usize;

        // One byte short: refused with the needed size in the message.
        let mut small = arena(total);
        let mut e = null_mut();
        let s = alm_engine_create(
            m,
            small.as_mut_ptr().cast(),
            total - 1,
            &p,
            &mut e,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_ERR_BUDGET);
        assert!(
            msg(&err).contains(&format!("needed {total} bytes")),
            "{}",
            msg(&err)
        );

        let mut buf = arena(total);
        let s = alm_engine_create(
            m,
            buf.as_mut_ptr().cast(),
            total,
            &p,
            &mut e,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_OK, "{}", msg(&err));
        let mut st = alm_engine_state {
            size: std::mem::size_of::<alm_engine_state>() as u32,
            ..Default::default()
        };
        assert_eq!(alm_engine_get_state(e, &mut st), alm_status::ALM_OK);
        assert_eq!(st.arena_used as usize, total);
        assert_eq!(st.ctx_capacity, 64);

        // The model cannot close while the engine lives.
        assert_eq!(alm_model_close(m), alm_status::ALM_ERR_IN_USE);

        // Bad token ids and bad enum values are refused.
        let toks = [1u32, 49152];
        let mut logits = null();
        let mut rows = 0usize;
        let s = alm_engine_eval(
            e,
            toks.as_ptr(),
            2,
            0,
            &mut logits,
            &mut rows,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_ERR_TOKENIZER);
        let s = alm_engine_eval(
            e,
            toks.as_ptr(),
            1,
            7,
            &mut logits,
            &mut rows,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_ERR_INVALID_ARGUMENT);
        let s = alm_engine_eval(
            e,
            toks.as_ptr(),
            1,
            alm_outputs::ALM_OUTPUTS_LAST as u32,
            &mut logits,
            &mut rows,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_OK, "{}", msg(&err));
        assert_eq!(rows, 1);
        let mut tok = 0u32;
        let greedy = alm_sampler_params {
            size: std::mem::size_of::<alm_sampler_params>() as u32,
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 1,
        };
        assert_eq!(
            alm_engine_set_sampler(e, &greedy, err.as_mut_ptr(), 256),
            alm_status::ALM_OK
        );
        assert_eq!(
            alm_engine_sample(e, &mut tok, err.as_mut_ptr(), 256),
            alm_status::ALM_OK
        );
        let row = std::slice::from_raw_parts(logits, 49152);
        let best = (0..49152)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        assert_eq!(tok as usize, best);

        assert_eq!(alm_engine_free(e), alm_status::ALM_OK);
        assert_eq!(alm_model_close(m), alm_status::ALM_OK);
    }
}

static TASKS_RUN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn my_parallel_for(
    user: *mut c_void,
    n: usize,
    task: alm_task_fn,
    ctx: *mut c_void,
) {
    assert_eq!(user as usize, 0xC0FFEE);
    std::thread::scope(|s| {
        for i in 0..n {
            let ctx = ctx as usize;
            s.spawn(move || {
                // SAFETY: the library's task with its context, as documented.
                unsafe { task(ctx as *mut c_void, i) };
                TASKS_RUN.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
}

#[test]
fn a_callers_parallel_for_gives_the_same_logits() {
    let m = open_model();
    // SAFETY: live handles, arenas we own, a valid callback.
    unsafe {
        let run = |parallel: bool| -> Vec<f32> {
            let mut p = std::mem::zeroed::<alm_engine_params>();
            alm_engine_default_params(&mut p, std::mem::size_of::<alm_engine_params>());
            p.ctx_tokens = 32;
            p.threads = 3;
            if parallel {
                p.parallel_for = Some(my_parallel_for);
                p.parallel_user_data = 0xC0FFEE as *mut c_void;
            } else {
                p.threads = 1;
            }
            let mut buf = arena(16 << 20);
            let mut e = null_mut();
            let mut err = [0 as c_char; 256];
            assert_eq!(
                alm_engine_create(
                    m,
                    buf.as_mut_ptr().cast(),
                    16 << 20,
                    &p,
                    &mut e,
                    err.as_mut_ptr(),
                    256
                ),
                alm_status::ALM_OK,
                "{}",
                msg(&err)
            );
            let toks = [6403u32, 1980, 253, 655];
            let mut logits = null();
            let mut rows = 0;
            assert_eq!(
                alm_engine_eval(
                    e,
                    toks.as_ptr(),
                    4,
                    0,
                    &mut logits,
                    &mut rows,
                    null_mut(),
                    0
                ),
                alm_status::ALM_OK
            );
            let out = std::slice::from_raw_parts(logits, 49152).to_vec();
            assert_eq!(alm_engine_free(e), alm_status::ALM_OK);
            out
        };
        let serial = run(false);
        let before = TASKS_RUN.load(Ordering::Relaxed);
        let par = run(true);
        assert!(
            TASKS_RUN.load(Ordering::Relaxed) > before,
            "the callback was never used"
        );
        assert_eq!(serial, par, "logits differ with a caller's parallel-for");
        assert_eq!(alm_model_close(m), alm_status::ALM_OK);
    }
}

#[test]
fn tokenizer_api_reports_exact_sizes_and_refuses_garbage() {
    let m = open_model();
    let mut err = [0 as c_char; 256];
    // SAFETY: live handles, buffers we own, lengths that match.
    unsafe {
        let mut p = std::mem::zeroed::<alm_engine_params>();
        alm_engine_default_params(&mut p, std::mem::size_of::<alm_engine_params>());
        p.ctx_tokens = 64;
        let mut buf = arena(16 << 20);
        let mut e = null_mut();
        assert_eq!(
            alm_engine_create(
                m,
                buf.as_mut_ptr().cast(),
                16 << 20,
                &p,
                &mut e,
                err.as_mut_ptr(),
                256
            ),
            alm_status::ALM_OK
        );
        let mut tok = null_mut();
        assert_eq!(
            alm_engine_get_tokenizer(e, &mut tok, err.as_mut_ptr(), 256),
            alm_status::ALM_OK
        );

        // "Hello, world!" is [19556, 28, 905, 17] (tokenizer-smollm2.jsonl).
        let text = "Hello, world!";
        let mut ids = [0u32; 8];
        let mut n = 0usize;
        let s = alm_tokenize(
            tok,
            text.as_ptr().cast(),
            text.len(),
            0,
            ids.as_mut_ptr(),
            2,
            &mut n,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!((s, n), (alm_status::ALM_ERR_BUFFER_TOO_SMALL, 4));
        let s = alm_tokenize(
            tok,
            text.as_ptr().cast(),
            text.len(),
            0,
            ids.as_mut_ptr(),
            8,
            &mut n,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_OK);
        assert_eq!(&ids[..n], &[19556, 28, 905, 17]);
        // Special tokens: parsed only when asked.
        let text = "<|im_start|>user";
        let flags = alm_tokenize_flags::ALM_TOKENIZE_PARSE_SPECIAL as u32;
        alm_tokenize(
            tok,
            text.as_ptr().cast(),
            text.len(),
            flags,
            ids.as_mut_ptr(),
            8,
            &mut n,
            null_mut(),
            0,
        );
        assert_eq!(ids[0], 1); // <|im_start|>
        let mut eog = 0;
        assert_eq!(alm_token_is_eog(tok, 2, &mut eog), alm_status::ALM_OK);
        assert_eq!(eog, 1); // <|im_end|>

        // A piece, first with a short buffer.
        let mut piece = [0 as c_char; 16];
        let mut k = 0usize;
        assert_eq!(
            alm_token_to_piece(tok, 19556, 0, piece.as_mut_ptr(), 2, &mut k, null_mut(), 0),
            alm_status::ALM_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(k, 5);
        assert_eq!(
            alm_token_to_piece(tok, 19556, 0, piece.as_mut_ptr(), 16, &mut k, null_mut(), 0),
            alm_status::ALM_OK
        );
        assert_eq!(
            std::slice::from_raw_parts(piece.as_ptr().cast::<u8>(), k),
            b"Hello"
        );

        // The detokenizer refuses state it did not write, and keeps state on a short buffer.
        let mut d = alm_detok { opaque: [0xFF; 16] };
        assert_eq!(
            alm_detok_push(tok, &mut d, 19556, piece.as_mut_ptr(), 16, &mut k),
            alm_status::ALM_ERR_INVALID_ARGUMENT
        );
        assert_eq!(alm_detok_init(&mut d, 0, 0), alm_status::ALM_OK);
        let before = d.opaque;
        assert_eq!(
            alm_detok_push(tok, &mut d, 19556, piece.as_mut_ptr(), 1, &mut k),
            alm_status::ALM_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!((k, d.opaque), (5, before));
        assert_eq!(
            alm_detok_push(tok, &mut d, 19556, piece.as_mut_ptr(), 16, &mut k),
            alm_status::ALM_OK
        );
        assert_eq!(k, 5);

        // Chat formatting with the model's ChatML template.
        let user = "Hi";
        let msgs = [alm_chat_message {
            role: alm_role::ALM_ROLE_USER as u32,
            content: user.as_ptr().cast(),
            content_len: 2,
        }];
        let mut out = vec![0 as c_char; 512];
        let s = alm_chat_format(
            tok,
            msgs.as_ptr(),
            1,
            1,
            std::ptr::null(),
            out.as_mut_ptr(),
            8,
            &mut k,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_ERR_BUFFER_TOO_SMALL);
        let needed = k;
        let s = alm_chat_format(
            tok,
            msgs.as_ptr(),
            1,
            1,
            std::ptr::null(),
            out.as_mut_ptr(),
            512,
            &mut k,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!((s, k), (alm_status::ALM_OK, needed));
        let text =
            String::from_utf8_lossy(std::slice::from_raw_parts(out.as_ptr().cast::<u8>(), k))
                .into_owned();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let bad_role = [alm_chat_message {
            role: 9,
            content: user.as_ptr().cast(),
            content_len: 2,
        }];
        assert_eq!(
            alm_chat_format(
                tok,
                bad_role.as_ptr(),
                1,
                1,
                std::ptr::null(),
                out.as_mut_ptr(),
                512,
                &mut k,
                null_mut(),
                0
            ),
            alm_status::ALM_ERR_INVALID_ARGUMENT
        );

        assert_eq!(alm_tokenizer_free(tok), alm_status::ALM_OK);
        assert_eq!(alm_engine_free(e), alm_status::ALM_OK);
        assert_eq!(alm_model_close(m), alm_status::ALM_OK);
    }
}

#[test]
fn a_standalone_tokenizer_loads_a_model_arenalm_cannot_run() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-gemma.sh",
        path.display()
    );
    let bytes = std::fs::read(&path).unwrap();
    let mut err = [0 as c_char; 256];
    // SAFETY: buffers we own and keep alive until the tokenizer is freed.
    unsafe {
        let mut m = null_mut();
        // The model itself is refused (gemma3 is not a llama-family architecture here)...
        assert_eq!(
            alm_model_open_bytes(bytes.as_ptr(), bytes.len(), &mut m, err.as_mut_ptr(), 256),
            alm_status::ALM_ERR_MODEL
        );
        // ...but its tokenizer loads.
        let mut need = 0usize;
        assert_eq!(
            alm_tokenizer_arena_bytes(
                bytes.as_ptr(),
                bytes.len(),
                &mut need,
                err.as_mut_ptr(),
                256
            ),
            alm_status::ALM_OK
        );
        let mut buf = arena(need + 64);
        let mut tok = null_mut();
        let s = alm_tokenizer_create(
            bytes.as_ptr(),
            bytes.len(),
            buf.as_mut_ptr().cast(),
            need,
            &mut tok,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_OK, "{}", msg(&err));
        let text = "Hello world";
        let mut ids = [0u32; 8];
        let mut n = 0;
        let flags = alm_tokenize_flags::ALM_TOKENIZE_ADD_BOS as u32;
        assert_eq!(
            alm_tokenize(
                tok,
                text.as_ptr().cast(),
                text.len(),
                flags,
                ids.as_mut_ptr(),
                8,
                &mut n,
                null_mut(),
                0
            ),
            alm_status::ALM_OK
        );
        assert_eq!(ids[0], 2); // <bos>
        assert!(n >= 2);
        assert_eq!(alm_tokenizer_free(tok), alm_status::ALM_OK);
        // One byte short of the arena the tokenizer needs.
        let s = alm_tokenizer_create(
            bytes.as_ptr(),
            bytes.len(),
            buf.as_mut_ptr().cast(),
            need - 1,
            &mut tok,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_ERR_BUDGET);
    }
}

fn default_params() -> alm_engine_params {
    // SAFETY: a plain C struct, filled by the library.
    unsafe {
        let mut p = std::mem::zeroed::<alm_engine_params>();
        assert_eq!(
            alm_engine_default_params(&mut p, std::mem::size_of::<alm_engine_params>()),
            alm_status::ALM_OK
        );
        p
    }
}

fn plan_struct() -> alm_memory_plan {
    alm_memory_plan {
        size: std::mem::size_of::<alm_memory_plan>() as u32,
        ..Default::default()
    }
}

#[test]
fn one_params_struct_plans_the_arena_and_creates_the_engine_in_it() {
    let m = open_model();
    let mut err = [0 as c_char; 256];
    // SAFETY: live handles, arenas we own.
    unsafe {
        // Fill a budget with 3 threads: the plan and the engine agree on
        // every byte, because they read the same struct.
        let mut p = default_params();
        p.threads = 3;
        p.max_batch = 16;
        let budget = 12 << 20;
        let mut plan = plan_struct();
        assert_eq!(
            alm_plan_for_budget(m, &p, budget, &mut plan, err.as_mut_ptr(), 256),
            alm_status::ALM_OK,
            "{}",
            msg(&err)
        );
        let mut max_ctx = 0u32;
        assert_eq!(
            alm_plan_max_context(m, &p, budget, &mut max_ctx, null_mut(), 0),
            alm_status::ALM_OK
        );
        assert_eq!(max_ctx, plan.ctx_tokens);
        let mut buf = arena(budget);
        let mut e = null_mut();
        assert_eq!(
            alm_engine_create(
                m,
                buf.as_mut_ptr().cast(),
                budget,
                &p,
                &mut e,
                err.as_mut_ptr(),
                256
            ),
            alm_status::ALM_OK,
            "{}",
            msg(&err)
        );
        let mut st = alm_engine_state {
            size: std::mem::size_of::<alm_engine_state>() as u32,
            ..Default::default()
        };
        assert_eq!(alm_engine_get_state(e, &mut st), alm_status::ALM_OK);
        assert_eq!(st.ctx_capacity, u64::from(plan.ctx_tokens));
        assert_eq!(st.arena_used, plan.total_bytes);
        let mut carved = plan_struct();
        assert_eq!(alm_engine_get_plan(e, &mut carved), alm_status::ALM_OK);
        assert_eq!(carved, plan);
        assert_eq!(alm_engine_free(e), alm_status::ALM_OK);
        assert_eq!(alm_model_close(m), alm_status::ALM_OK);
    }
}

#[test]
fn a_context_beyond_training_is_refused_naming_both_numbers_unless_allowed() {
    let m = open_model();
    let mut err = [0 as c_char; 256];
    // SAFETY: live handles, structs we own.
    unsafe {
        let mut p = default_params();
        p.ctx_tokens = 8193; // SmolLM2 was trained on 8192 tokens.
        let mut plan = plan_struct();
        assert_eq!(
            alm_plan(m, &p, &mut plan, err.as_mut_ptr(), 256),
            alm_status::ALM_ERR_INVALID_ARGUMENT
        );
        let text = msg(&err);
        assert!(text.contains("8193") && text.contains("8192"), "{text}");
        // The engine refuses it the same way, before touching the arena.
        let mut e = null_mut();
        let mut small = arena(64);
        assert_eq!(
            alm_engine_create(
                m,
                small.as_mut_ptr().cast(),
                64,
                &p,
                &mut e,
                err.as_mut_ptr(),
                256
            ),
            alm_status::ALM_ERR_INVALID_ARGUMENT
        );
        assert!(msg(&err).contains("training context of 8192"));
        p.allow_ctx_beyond_train = 1;
        assert_eq!(
            alm_plan(m, &p, &mut plan, err.as_mut_ptr(), 256),
            alm_status::ALM_OK
        );
        assert_eq!(plan.ctx_tokens, 8193);
        assert_eq!(alm_model_close(m), alm_status::ALM_OK);
    }
}

static REENTRANT_ENGINE: AtomicUsize = AtomicUsize::new(0);
static REENTRANT_STATUS: AtomicUsize = AtomicUsize::new(usize::MAX);

unsafe extern "C" fn reentrant_parallel_for(
    _user: *mut c_void,
    n: usize,
    task: alm_task_fn,
    ctx: *mut c_void,
) {
    let e = std::ptr::without_provenance_mut::<alm_engine>(REENTRANT_ENGINE.load(Ordering::SeqCst));
    // SAFETY: a valid handle number and state struct; the call must refuse.
    let s = unsafe {
        let mut st = alm_engine_state {
            size: std::mem::size_of::<alm_engine_state>() as u32,
            ..Default::default()
        };
        alm_engine_get_state(e, &mut st)
    };
    REENTRANT_STATUS.store(s as usize, Ordering::SeqCst);
    for i in 0..n {
        // SAFETY: the library's task with its context, as documented.
        unsafe { task(ctx, i) };
    }
}

#[test]
fn calling_an_engine_from_inside_its_own_parallel_for_is_busy_not_a_deadlock() {
    let m = open_model();
    // SAFETY: live handles, an arena we own, a valid callback.
    unsafe {
        let mut p = default_params();
        p.ctx_tokens = 16;
        p.threads = 2;
        p.parallel_for = Some(reentrant_parallel_for);
        let mut buf = arena(16 << 20);
        let mut e = null_mut();
        assert_eq!(
            alm_engine_create(
                m,
                buf.as_mut_ptr().cast(),
                16 << 20,
                &p,
                &mut e,
                null_mut(),
                0
            ),
            alm_status::ALM_OK
        );
        REENTRANT_ENGINE.store(e.addr(), Ordering::SeqCst);
        let t = [1u32];
        assert_eq!(
            alm_engine_eval(e, t.as_ptr(), 1, 0, null_mut(), null_mut(), null_mut(), 0),
            alm_status::ALM_OK
        );
        assert_eq!(
            REENTRANT_STATUS.load(Ordering::SeqCst),
            alm_status::ALM_ERR_BUSY as usize
        );
        assert_eq!(alm_engine_free(e), alm_status::ALM_OK);
        assert_eq!(alm_model_close(m), alm_status::ALM_OK);
    }
}
