//! Generated `forward` performs no heap allocation: a counting global
//! allocator wraps the system one, and `forward` of LeNet-5 and of a ResNet
//! basic block (at batch 1 and larger, full and partial batches; the first
//! call, which computes the prepared weights, and a call after
//! `params_mut`, which computes them again) must not allocate, reallocate
//! or free; nor may the training routine (`loss_and_grads`) once its arena
//! is allocated by the first call.
//!
//! Only the measuring thread's heap calls count (a `thread_local!` flag):
//! the test harness's own threads allocate at any time. That is exact here,
//! since the kernels run on that thread alone: the global pool is one
//! thread ([`one_thread`]).
//!
//! On a multi-thread pool the kernels' per-thread scratch
//! (`with_scratch` in `runtime/src/kernels/gemm.rs`) would grow the first
//! time a worker runs a chunk that warm-up ran elsewhere; generated
//! networks therefore size every worker's scratch at construction
//! (`reserve_scratch`, through `rayon::broadcast`), and
//! [`lenet5_forward_on_two_threads_does_not_allocate`] counts the heap calls
//! of every worker of a two-thread pool while `forward` runs on it. Training
//! (`conv2d_backward_data`) is checked on one thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

kiln::network!("models/lenet5.yaml");

/// The system allocator, counting the measured thread's calls while
/// [`ARMED`] is set.
struct Counting;

/// Whether a measured region is open (on the thread [`MEASURING`] marks).
static ARMED: AtomicBool = AtomicBool::new(false);
/// Allocations, reallocations and frees of the measured thread.
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Whether the heap calls of every thread of the measured pool count, not
/// just the measuring thread's.
static COUNT_ALL: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this thread is the one being measured.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread is a worker of the two-thread pool under test
    /// (other threads, such as a finished test's thread freeing its
    /// thread-locals while this test measures, do not count).
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

/// Whether the heap call being made now counts.
fn counted() -> bool {
    ARMED.load(Ordering::Relaxed)
        && (MEASURING.with(Cell::get)
            || (COUNT_ALL.load(Ordering::Relaxed) && IN_POOL.with(Cell::get)))
}

/// Held by each test, so that one test's set-up is not counted in another.
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counted() {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Makes the global thread pool one thread, so that kernels never leave
/// the calling thread (see the file's comment); later calls are no-ops.
fn one_thread() {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global();
    assert_eq!(rayon::current_num_threads(), 1);
}

/// The heap calls `f` makes on this thread.
fn heap_calls(f: impl FnOnce()) -> usize {
    CALLS.store(0, Ordering::SeqCst);
    MEASURING.with(|m| m.set(true));
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    MEASURING.with(|m| m.set(false));
    CALLS.load(Ordering::SeqCst)
}

/// Builds network `$net` at `$batch` and checks that `forward` makes no
/// heap call: the first call (which computes the prepared weights), calls
/// on each count of `$examples`, and a call after `params_mut` (which
/// marks the prepared weights stale, so they are computed again).
macro_rules! check {
    ($net:ty, $batch:expr, $examples:expr) => {{
        let batch: usize = $batch;
        let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
            kiln::runtime::init::Dist::Normal,
        ));
        let mut net = <$net>::new(&init, 3, batch).unwrap();
        let x: Vec<f32> = (0..batch * <$net>::INPUT_LEN)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect();
        let name = stringify!($net);
        let forward = |net: &mut $net, n: usize, what: &str| {
            let input = &x[..n * <$net>::INPUT_LEN];
            let mut sum = 0.0;
            let calls = heap_calls(|| {
                let y = net.forward(input).unwrap();
                sum = y.iter().sum::<f32>();
            });
            assert!(sum.is_finite());
            assert_eq!(
                calls, 0,
                "{name} at batch {batch}, {n} examples ({what}): forward made {calls} heap calls"
            );
        };
        forward(&mut net, batch, "first call");
        for &n in $examples {
            forward(&mut net, n, "warm");
        }
        net.params_mut().values[0] += 0.5;
        forward(&mut net, batch, "after params_mut");
    }};
}

mod block {
    kiln::network!("compiler/tests/data/basic_block.yaml");
}

#[test]
fn lenet5_forward_does_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    one_thread();
    // Batch 1; batch 8 full, partial, and full again.
    check!(LeNet5, 1, &[1, 1]);
    check!(LeNet5, 8, &[8, 3, 8]);
}

#[test]
fn resnet_block_forward_does_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    one_thread();
    // Fused steps with folded batch norm, packed weights and a residual.
    check!(block::BasicBlock, 1, &[1]);
    check!(block::BasicBlock, 4, &[4, 3]);
}

#[test]
fn lenet5_loss_and_grads_does_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    one_thread();
    let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
        kiln::runtime::init::Dist::Normal,
    ));
    let mut net = LeNet5::new(&init, 5, 8).unwrap();
    let x: Vec<f32> = (0..8 * LeNet5::INPUT_LEN)
        .map(|i| ((i * 31) % 97) as f32 / 97.0)
        .collect();
    let y: Vec<u32> = (0..8).collect();
    net.loss_and_grads(&x, &y).unwrap();
    for n in [8, 5, 8] {
        let mut loss = 0.0;
        let calls = heap_calls(|| {
            loss = net
                .loss_and_grads(&x[..n * LeNet5::INPUT_LEN], &y[..n])
                .unwrap();
        });
        assert!(loss.is_finite());
        assert_eq!(
            calls, 0,
            "LeNet-5 loss_and_grads, {n} of 8 examples: {calls} heap calls"
        );
    }
}

#[test]
fn lenet5_forward_on_two_threads_does_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .start_handler(|_| IN_POOL.with(|c| c.set(true)))
        .build()
        .unwrap();
    pool.install(|| {
        let init = kiln::runtime::init::InitPolicy::new(kiln::runtime::init::Init::He(
            kiln::runtime::init::Dist::Normal,
        ));
        // Batch 64: enough work for the kernels to use both threads.
        let batch = 64;
        let mut net = LeNet5::new(&init, 3, batch).unwrap();
        let x: Vec<f32> = (0..batch * LeNet5::INPUT_LEN)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect();
        net.forward(&x).unwrap();
        for _ in 0..5 {
            COUNT_ALL.store(true, Ordering::SeqCst);
            let calls = heap_calls(|| {
                net.forward(&x).unwrap();
            });
            COUNT_ALL.store(false, Ordering::SeqCst);
            assert_eq!(
                calls, 0,
                "LeNet-5 at batch 64 on two threads: {calls} heap calls"
            );
        }
    });
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
