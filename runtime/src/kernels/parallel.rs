//! When and how a kernel uses more than one thread.
//!
//! Every fast kernel splits its output into independent chunks (by batch,
//! channel or tile) and hands them to [`for_each_chunk_mut`]. Each chunk is
//! computed by exactly one task with a fixed reduction order, so the result
//! is bit-identical whatever the number of threads. Work below
//! [`MIN_PARALLEL_WORK`] stays on the calling thread: LeNet at batch 1 never
//! touches the thread pool. Without the `std` feature everything runs on the
//! calling thread; call sites do not change.

/// The least total work (roughly, multiply-adds or element operations) for
/// which a kernel spreads over the thread pool.
pub const MIN_PARALLEL_WORK: usize = 1 << 17;

/// Whether `work` units of work are worth spreading over threads.
#[inline]
pub fn worth_parallel(work: usize) -> bool {
    #[cfg(feature = "std")]
    {
        work >= MIN_PARALLEL_WORK && rayon::current_num_threads() > 1
    }
    #[cfg(not(feature = "std"))]
    {
        let _ = work;
        false
    }
}

/// Calls `f(index, chunk)` for each `chunk`-sized piece of `data` (the last
/// may be shorter), on the thread pool when `work` (the total work of the
/// call) is worth it, else in order on this thread.
#[inline]
pub fn for_each_chunk_mut<T, F>(data: &mut [T], chunk: usize, work: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    assert!(chunk > 0, "for_each_chunk_mut: chunk size must be positive");
    #[cfg(feature = "std")]
    if worth_parallel(work) && data.len() > chunk {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let _ = work;
    for (i, c) in data.chunks_mut(chunk).enumerate() {
        f(i, c);
    }
}

/// Calls `f(index)` for each index in `0..n`, on the thread pool when
/// `work` is worth it. `f` must write only to memory no other index writes.
#[inline]
pub fn for_each_index<F>(n: usize, work: usize, f: F)
where
    F: Fn(usize) + Sync + Send,
{
    #[cfg(feature = "std")]
    if worth_parallel(work) && n > 1 {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
        return;
    }
    let _ = work;
    for i in 0..n {
        f(i);
    }
}

/// Like [`for_each_chunk_mut`] over two outputs at once: calls
/// `f(index, a_chunk, b_chunk)` for the `index`-th `chunk_a`-sized piece of
/// `a` together with the `index`-th `chunk_b`-sized piece of `b`, for kernels
/// that write two results per task (values and argmax indices, mean and
/// inverse standard deviation). Pieces are paired up to the shorter count.
#[inline]
pub fn for_each_chunk_pair_mut<T, U, F>(
    a: &mut [T],
    chunk_a: usize,
    b: &mut [U],
    chunk_b: usize,
    work: usize,
    f: F,
) where
    T: Send,
    U: Send,
    F: Fn(usize, &mut [T], &mut [U]) + Sync + Send,
{
    assert!(
        chunk_a > 0 && chunk_b > 0,
        "for_each_chunk_pair_mut: chunk sizes must be positive"
    );
    #[cfg(feature = "std")]
    if worth_parallel(work) && a.len() > chunk_a {
        use rayon::prelude::*;
        a.par_chunks_mut(chunk_a)
            .zip(b.par_chunks_mut(chunk_b))
            .enumerate()
            .for_each(|(i, (ca, cb))| f(i, ca, cb));
        return;
    }
    let _ = work;
    for (i, (ca, cb)) in a.chunks_mut(chunk_a).zip(b.chunks_mut(chunk_b)).enumerate() {
        f(i, ca, cb);
    }
}
