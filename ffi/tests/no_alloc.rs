//! After init, evaluating, sampling and detokenizing through the C API
//! allocate nothing: not in core (which has no allocator), not in the host
//! layer, not on the thread pool's workers. A counting global allocator
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

#[test]
fn evaluating_and_sampling_allocate_nothing() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model.sh",
        path.display()
    );
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let mut err = [0 as c_char; 256];
    // SAFETY: live handles, buffers we own, lengths that match.
    unsafe {
        let mut m = null_mut();
        assert_eq!(
            alm_model_open_file(cpath.as_ptr(), &mut m, err.as_mut_ptr(), 256),
            alm_status::ALM_OK
        );
        let mut p = std::mem::zeroed::<alm_engine_params>();
        alm_engine_default_params(&mut p, std::mem::size_of::<alm_engine_params>());
        p.ctx_tokens = 128;
        p.threads = 2;
        let mut arena = vec![0u64; (24 << 20) / 8];
        let mut e = null_mut();
        let s = alm_engine_create(
            m,
            arena.as_mut_ptr().cast(),
            24 << 20,
            &p,
            &mut e,
            err.as_mut_ptr(),
            256,
        );
        assert_eq!(s, alm_status::ALM_OK);
        let mut tok = null_mut();
        assert_eq!(
            alm_engine_get_tokenizer(e, &mut tok, err.as_mut_ptr(), 256),
            alm_status::ALM_OK
        );
        let prompt: Vec<u32> = (0..40).map(|i| 300 + i * 11).collect();
        let mut piece = [0 as c_char; 64];
        let mut n = 0usize;

        // Warm up once (the pool's workers start, first-touch effects).
        assert_eq!(
            alm_engine_eval(
                e,
                prompt.as_ptr(),
                prompt.len(),
                0,
                &mut null(),
                &mut 0,
                null_mut(),
                0
            ),
            alm_status::ALM_OK
        );
        alm_engine_reset(e);

        COUNTING.store(true, Ordering::SeqCst);
        let s = alm_engine_eval(
            e,
            prompt.as_ptr(),
            prompt.len(),
            0,
            &mut null(),
            &mut 0,
            null_mut(),
            0,
        );
        let mut d = alm_detok { opaque: [0; 16] };
        alm_detok_init(&mut d, 0, 1);
        let mut steps_ok = s == alm_status::ALM_OK;
        for _ in 0..20 {
            let mut t = 0u32;
            steps_ok &= alm_engine_sample(e, &mut t, null_mut(), 0) == alm_status::ALM_OK;
            steps_ok &= alm_detok_push(tok, &mut d, t, piece.as_mut_ptr(), 64, &mut n)
                == alm_status::ALM_OK;
            steps_ok &= alm_engine_eval(e, &t, 1, 0, &mut null(), &mut 0, null_mut(), 0)
                == alm_status::ALM_OK;
        }
        COUNTING.store(false, Ordering::SeqCst);

        assert!(steps_ok, "a call failed");
        assert_eq!(
            ALLOCATIONS.load(Ordering::SeqCst),
            0,
            "allocations during evaluation and sampling"
        );
        alm_tokenizer_free(tok);
        alm_engine_free(e);
        assert_eq!(alm_model_close(m), alm_status::ALM_OK);
    }
}
