//! Generated `forward` performs no heap allocation: a counting global
//! allocator wraps the system one, and after one warm-up call, `forward` of
//! LeNet-5 (at batch 1 and at batch 8, full and partial batches) must not
//! allocate, reallocate or free.
//!
//! The counter is global, so allocations made on other threads on the
//! call's behalf (a thread pool) count too; the tests of this file take one
//! lock so that they never measure each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

kiln::network!("models/lenet5.yaml");

/// The system allocator, counting calls while [`ARMED`] is set.
struct Counting;

/// Whether any thread is inside a measured region.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Allocations, reallocations and frees seen while armed, on any thread.
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Held by each test, so that one test's set-up is not counted in another.
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The heap calls `f` makes (on any thread while it runs).
fn heap_calls(f: impl FnOnce()) -> usize {
    CALLS.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    CALLS.load(Ordering::SeqCst)
}

/// Builds LeNet-5 at `batch`, warms it up on a full batch, and checks that
/// further calls on `examples` examples each allocate `expect` times.
fn check(batch: usize, examples: &[usize], expect: usize) {
    let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
        kiln::runtime::init::Dist::Normal,
    ));
    let mut net = LeNet5::new(&init, 3, batch).unwrap();
    let x: Vec<f32> = (0..batch * LeNet5::INPUT_LEN)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect();
    net.forward(&x).unwrap();
    for &n in examples {
        let input = &x[..n * LeNet5::INPUT_LEN];
        let mut sum = 0.0;
        let calls = heap_calls(|| {
            let y = net.forward(input).unwrap();
            sum = y.iter().sum::<f32>();
        });
        assert!(sum.is_finite());
        assert_eq!(
            calls, expect,
            "LeNet-5 at batch {batch}, {n} examples: forward made {calls} heap calls"
        );
    }
}

#[test]
fn lenet5_forward_does_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Batch 1; batch 8 full, partial, and full again.
    check(1, &[1, 1], 0);
    check(8, &[8, 3, 8], 0);
}

#[test]
fn the_counter_counts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The harness itself must see an allocation, or a zero above means nothing.
    let calls = heap_calls(|| {
        let v: Vec<f32> = std::hint::black_box(vec![1.0; 64]);
        drop(v);
    });
    assert_eq!(calls, 2);
}
