//! The header's promise about memory, checked: the library allocates on
//! the heap only for its built-in thread pool, when an engine is created
//! with `threads > 1` and no `parallel_for`. Opening models (from bytes or
//! a file), planning, creating engines and tokenizers, evaluating,
//! sampling, detokenizing, formatting chats, freeing, and every refusal
//! along the way (messages included) allocate nothing, and a refused
//! absurd thread count never starts the pool. A counting global allocator
//! watches every thread of this test binary (which holds this one test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_char;
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arenalm::capi::*;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let r = f();
    COUNTING.store(false, Ordering::SeqCst);
    (r, ALLOCATIONS.load(Ordering::SeqCst) - before)
}

#[test]
fn only_the_thread_pool_allocates() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model.sh",
        path.display()
    );
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut engine_arena = vec![0u64; (24 << 20) / 8];
    let mut tok_arena = vec![0u64; (8 << 20) / 8];
    let prompt: Vec<u32> = (0..40).map(|i| 300 + i * 11).collect();
    let mut err = [0 as c_char; 256];
    let mut statuses: Vec<(&str, alm_status, alm_status)> = Vec::with_capacity(64);

    // SAFETY: live handles, buffers we own, lengths that match; the
    // deliberately wrong calls must be refused.
    let (_, n) = counted(|| unsafe {
        let mut check = |what: &'static str, got: alm_status, want: alm_status| {
            statuses.push((what, got, want));
        };
        use alm_status::*;
        let mut m = null_mut();
        check(
            "open_file",
            alm_model_open_file(cpath.as_ptr(), &mut m, err.as_mut_ptr(), 256),
            ALM_OK,
        );
        check(
            "open_file missing",
            alm_model_open_file(
                c"/nonexistent".as_ptr(),
                &mut null_mut(),
                err.as_mut_ptr(),
                256,
            ),
            ALM_ERR_IO,
        );
        check(
            "open_file directory",
            alm_model_open_file(c"/".as_ptr(), &mut null_mut(), err.as_mut_ptr(), 256),
            ALM_ERR_IO,
        );
        let mut mb = null_mut();
        check(
            "open_bytes",
            alm_model_open_bytes(bytes.as_ptr(), bytes.len(), &mut mb, err.as_mut_ptr(), 256),
            ALM_OK,
        );
        check(
            "open_bytes truncated",
            alm_model_open_bytes(bytes.as_ptr(), 1000, &mut null_mut(), err.as_mut_ptr(), 256),
            ALM_ERR_GGUF,
        );
        // What-if sizing, answered and refused.
        let mut arch = std::mem::zeroed::<alm_arch>();
        alm_arch_default_params(&mut arch, std::mem::size_of::<alm_arch>());
        (arch.n_layers, arch.dim, arch.n_heads, arch.n_kv_heads) = (32, 4096, 32, 8);
        (arch.head_dim, arch.ffn_dim, arch.vocab) = (128, 14336, 128_256);
        let mut wp = std::mem::zeroed::<alm_whatif_params>();
        alm_whatif_default_params(&mut wp, std::mem::size_of::<alm_whatif_params>());
        let mut arch_plan = alm_arch_plan {
            size: std::mem::size_of::<alm_arch_plan>() as u32,
            ..Default::default()
        };
        check(
            "plan_arch",
            alm_plan_arch(&arch, &wp, &mut arch_plan, err.as_mut_ptr(), 256),
            ALM_OK,
        );
        arch.n_kv_heads = 5;
        check(
            "plan_arch refused",
            alm_plan_arch(&arch, &wp, &mut arch_plan, err.as_mut_ptr(), 256),
            ALM_ERR_INVALID_ARGUMENT,
        );
        let mut p = std::mem::zeroed::<alm_engine_params>();
        alm_engine_default_params(&mut p, std::mem::size_of::<alm_engine_params>());
        p.ctx_tokens = 128;
        let mut plan = alm_memory_plan {
            size: std::mem::size_of::<alm_memory_plan>() as u32,
            ..Default::default()
        };
        check(
            "plan",
            alm_plan(m, &p, &mut plan, err.as_mut_ptr(), 256),
            ALM_OK,
        );
        let mut bad = p;
        bad.size = 3;
        check(
            "plan bad size",
            alm_plan(m, &bad, &mut plan, err.as_mut_ptr(), 256),
            ALM_ERR_INVALID_ARGUMENT,
        );
        bad = p;
        bad.ctx_tokens = 100_000;
        check(
            "plan beyond training",
            alm_plan(m, &bad, &mut plan, err.as_mut_ptr(), 256),
            ALM_ERR_INVALID_ARGUMENT,
        );
        // An absurd thread count is refused before any thread starts, and
        // so is an allowed one whose arena is too small: the pool is last.
        let mut e = null_mut();
        for (threads, len, want) in [
            (1 << 20, 24 << 20, ALM_ERR_INVALID_ARGUMENT),
            (200, 1 << 20, ALM_ERR_BUDGET),
        ] {
            bad = p;
            bad.threads = threads;
            check(
                "create refused",
                alm_engine_create(
                    m,
                    engine_arena.as_mut_ptr().cast(),
                    len,
                    &bad,
                    &mut e,
                    err.as_mut_ptr(),
                    256,
                ),
                want,
            );
        }
        check(
            "create",
            alm_engine_create(
                mb,
                engine_arena.as_mut_ptr().cast(),
                24 << 20,
                &p,
                &mut e,
                err.as_mut_ptr(),
                256,
            ),
            ALM_OK,
        );
        let mut tok = null_mut();
        check(
            "get_tokenizer",
            alm_engine_get_tokenizer(e, &mut tok, err.as_mut_ptr(), 256),
            ALM_OK,
        );
        let text = "Hello, world!";
        let mut ids = [0u32; 16];
        let mut n_ids = 0usize;
        check(
            "tokenize",
            alm_tokenize(
                tok,
                text.as_ptr().cast(),
                text.len(),
                0,
                ids.as_mut_ptr(),
                16,
                &mut n_ids,
                err.as_mut_ptr(),
                256,
            ),
            ALM_OK,
        );
        check(
            "eval",
            alm_engine_eval(
                e,
                prompt.as_ptr(),
                prompt.len(),
                0,
                &mut null(),
                &mut 0,
                err.as_mut_ptr(),
                256,
            ),
            ALM_OK,
        );
        let mut piece = [0 as c_char; 64];
        let mut n = 0usize;
        let mut d = alm_detok { opaque: [0; 16] };
        alm_detok_init(&mut d, 0, 1);
        for _ in 0..4 {
            let mut t = 0u32;
            check(
                "sample",
                alm_engine_sample(e, &mut t, err.as_mut_ptr(), 256),
                ALM_OK,
            );
            check(
                "detok",
                alm_detok_push(tok, &mut d, t, piece.as_mut_ptr(), 64, &mut n),
                ALM_OK,
            );
            check(
                "eval one",
                alm_engine_eval(e, &t, 1, 0, &mut null(), &mut 0, err.as_mut_ptr(), 256),
                ALM_OK,
            );
        }
        let user = "Hi";
        let msgs = [alm_chat_message {
            role: alm_role::ALM_ROLE_USER as u32,
            content: user.as_ptr().cast(),
            content_len: 2,
        }];
        let mut chat = [0 as c_char; 512];
        check(
            "chat_format",
            alm_chat_format(
                tok,
                msgs.as_ptr(),
                1,
                1,
                null(),
                chat.as_mut_ptr(),
                512,
                &mut n,
                err.as_mut_ptr(),
                256,
            ),
            ALM_OK,
        );
        check(
            "accept out of range",
            alm_engine_accept(e, 49152),
            ALM_ERR_TOKENIZER,
        );
        check(
            "tokenizer as engine",
            alm_engine_reset(tok.cast()),
            ALM_ERR_BAD_HANDLE,
        );
        check("engine free", alm_engine_free(e), ALM_OK);
        check("double free", alm_engine_free(e), ALM_ERR_BAD_HANDLE);
        check(
            "tokenizer of a freed engine",
            alm_token_is_eog(tok, 2, &mut 0),
            ALM_ERR_BAD_HANDLE,
        );
        let mut need = 0usize;
        check(
            "tokenizer_arena_bytes",
            alm_tokenizer_arena_bytes(
                bytes.as_ptr(),
                bytes.len(),
                &mut need,
                err.as_mut_ptr(),
                256,
            ),
            ALM_OK,
        );
        let mut st = null_mut();
        check(
            "tokenizer_create",
            alm_tokenizer_create(
                bytes.as_ptr(),
                bytes.len(),
                tok_arena.as_mut_ptr().cast(),
                (need + 63).min(tok_arena.len() * 8), // not 64-byte aligned
                &mut st,
                err.as_mut_ptr(),
                256,
            ),
            ALM_OK,
        );
        check("tokenizer_free", alm_tokenizer_free(st), ALM_OK);
        check("model close", alm_model_close(m), ALM_OK);
        check("model close bytes", alm_model_close(mb), ALM_OK);
        check("double close", alm_model_close(m), ALM_ERR_BAD_HANDLE);
    });
    for (what, got, want) in &statuses {
        assert_eq!(got, want, "{what}");
    }
    assert_eq!(statuses.len(), 40);
    assert_eq!(n, 0, "the library allocated outside a thread pool");

    // With a pool: it allocates when the engine is created, and never again.
    // SAFETY: as above.
    unsafe {
        let mut m = null_mut();
        assert_eq!(
            alm_model_open_file(cpath.as_ptr(), &mut m, null_mut(), 0),
            alm_status::ALM_OK
        );
        let mut p = std::mem::zeroed::<alm_engine_params>();
        alm_engine_default_params(&mut p, std::mem::size_of::<alm_engine_params>());
        p.ctx_tokens = 128;
        p.threads = 2;
        let mut e = null_mut();
        let (s, created) = counted(|| {
            alm_engine_create(
                m,
                engine_arena.as_mut_ptr().cast(),
                24 << 20,
                &p,
                &mut e,
                err.as_mut_ptr(),
                256,
            )
        });
        assert_eq!(s, alm_status::ALM_OK);
        assert!(created > 0, "a thread pool that allocates nothing?");
        // Warm up once (the pool's workers start, first-touch effects).
        let eval = |toks: &[u32]| {
            alm_engine_eval(
                e,
                toks.as_ptr(),
                toks.len(),
                0,
                &mut null(),
                &mut 0,
                null_mut(),
                0,
            )
        };
        assert_eq!(eval(&prompt), alm_status::ALM_OK);
        assert_eq!(alm_engine_reset(e), alm_status::ALM_OK);
        let (ok, n) = counted(|| {
            let mut ok = eval(&prompt) == alm_status::ALM_OK;
            for _ in 0..20 {
                let mut t = 0u32;
                ok &= alm_engine_sample(e, &mut t, null_mut(), 0) == alm_status::ALM_OK;
                ok &= eval(&[t]) == alm_status::ALM_OK;
            }
            ok
        });
        assert!(ok, "a call failed");
        assert_eq!(n, 0, "allocations while evaluating on the pool");
        assert_eq!(alm_engine_free(e), alm_status::ALM_OK);
        assert_eq!(alm_model_close(m), alm_status::ALM_OK);
    }
}
