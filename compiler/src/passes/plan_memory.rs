//! `plan_memory`: places every buffer of a schedule in one arena.
//!
//! Precondition: each buffer has a size and a live interval `[def, last]`
//! of step indices (a buffer is written at `def` and read for the last time
//! at `last`; two buffers conflict when their intervals overlap).
//!
//! Established: every buffer gets an offset such that no two conflicting
//! buffers overlap in memory. Two heuristics are run — greedy by size
//! (largest first, lowest fitting offset) and greedy by conflicts (the
//! buffers with the most conflicting bytes first) — and the smaller arena is
//! kept. The result reports the arena size next to the max-live lower bound
//! (no placement can do better than the largest sum of sizes live at one
//! step) and the no-reuse total (the sum of all sizes).
//!
//! Not done here: deciding lifetimes or aliasing (the plan builder does
//! that), alignment beyond `align` elements, or reordering the schedule.

/// One buffer to place: a size and the steps where it is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Size in elements.
    pub size: usize,
    /// The step that writes it first.
    pub def: usize,
    /// The step that reads it last (`>= def`).
    pub last: usize,
}

impl Interval {
    fn conflicts(&self, other: &Interval) -> bool {
        self.def <= other.last && other.def <= self.last
    }
}

/// Which heuristic produced a placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heuristic {
    /// Largest buffers first.
    GreedyBySize,
    /// Buffers with the most conflicting bytes first.
    GreedyByConflicts,
}

/// Offsets for every buffer, and the numbers that judge them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The offset of each buffer, in the order given.
    pub offsets: Vec<usize>,
    /// The arena size in elements.
    pub arena: usize,
    /// The largest sum of sizes live at one step: no placement does better.
    pub lower_bound: usize,
    /// The sum of all sizes: what no reuse at all would take.
    pub no_reuse: usize,
    /// The heuristic whose placement was kept.
    pub heuristic: Heuristic,
}

/// Places `buffers`, each offset a multiple of `align` (at least 1).
pub fn plan_memory(buffers: &[Interval], align: usize) -> MemoryPlan {
    let align = align.max(1);
    let mut by_size: Vec<usize> = (0..buffers.len()).collect();
    by_size.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].size), buffers[i].def, i));
    let conflict_bytes: Vec<usize> = buffers
        .iter()
        .map(|b| {
            buffers
                .iter()
                .filter(|o| b.conflicts(o))
                .map(|o| o.size)
                .sum()
        })
        .collect();
    let mut by_conflicts: Vec<usize> = (0..buffers.len()).collect();
    by_conflicts.sort_by_key(|&i| {
        (
            std::cmp::Reverse(conflict_bytes[i]),
            std::cmp::Reverse(buffers[i].size),
            i,
        )
    });
    let a = place(buffers, &by_size, align);
    let b = place(buffers, &by_conflicts, align);
    let (offsets, arena, heuristic) = if b.1 < a.1 {
        (b.0, b.1, Heuristic::GreedyByConflicts)
    } else {
        (a.0, a.1, Heuristic::GreedyBySize)
    };
    MemoryPlan {
        offsets,
        arena,
        lower_bound: lower_bound(buffers, align),
        no_reuse: buffers.iter().map(|b| round_up(b.size, align)).sum(),
        heuristic,
    }
}

fn round_up(v: usize, align: usize) -> usize {
    v.div_ceil(align) * align
}

/// Places buffers in `order`, each at the lowest aligned offset where it
/// overlaps no conflicting buffer already placed.
fn place(buffers: &[Interval], order: &[usize], align: usize) -> (Vec<usize>, usize) {
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut arena = 0;
    for &i in order {
        let b = &buffers[i];
        let size = round_up(b.size, align);
        let mut taken: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| buffers[j].conflicts(b))
            .map(|&j| (offsets[j], offsets[j] + round_up(buffers[j].size, align)))
            .collect();
        taken.sort_unstable();
        let mut at = 0;
        for (start, end) in taken {
            if at + size <= start {
                break;
            }
            at = at.max(round_up(end, align));
        }
        offsets[i] = at;
        arena = arena.max(at + size);
        placed.push(i);
    }
    (offsets, arena)
}

fn lower_bound(buffers: &[Interval], align: usize) -> usize {
    let steps = buffers.iter().map(|b| b.last + 1).max().unwrap_or(0);
    (0..steps)
        .map(|t| {
            buffers
                .iter()
                .filter(|b| b.def <= t && t <= b.last)
                .map(|b| round_up(b.size, align))
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(size: usize, def: usize, last: usize) -> Interval {
        Interval { size, def, last }
    }

    /// Checks that no two conflicting buffers overlap and that the
    /// reported numbers are as expected.
    fn check(buffers: &[Interval], expect_arena: usize, expect_bound: usize) {
        let plan = plan_memory(buffers, 1);
        for (i, a) in buffers.iter().enumerate() {
            for (j, b) in buffers.iter().enumerate().skip(i + 1) {
                if a.conflicts(b) {
                    let (oa, ob) = (plan.offsets[i], plan.offsets[j]);
                    assert!(
                        oa + a.size <= ob || ob + b.size <= oa,
                        "buffers {i} and {j} overlap: {plan:?}"
                    );
                }
            }
        }
        assert_eq!(plan.arena, expect_arena, "{plan:?}");
        assert_eq!(plan.lower_bound, expect_bound, "{plan:?}");
        assert_eq!(plan.no_reuse, buffers.iter().map(|b| b.size).sum::<usize>());
        assert!(plan.arena >= plan.lower_bound);
    }

    #[test]
    fn a_chain_reuses_two_buffers() {
        // x0 → x1 → x2 → x3: each buffer is live for two steps.
        check(
            &[iv(100, 0, 1), iv(50, 1, 2), iv(100, 2, 3), iv(10, 3, 3)],
            150,
            150,
        );
    }

    #[test]
    fn a_long_lived_buffer_stays_apart() {
        // A residual kept from step 0 to 3 while a chain runs beside it.
        check(
            &[iv(64, 0, 3), iv(64, 1, 2), iv(64, 2, 3), iv(64, 3, 3)],
            192,
            192,
        );
    }

    #[test]
    fn disjoint_lifetimes_share_one_offset() {
        check(&[iv(10, 0, 0), iv(20, 1, 1), iv(5, 2, 2)], 20, 20);
    }

    #[test]
    fn alignment_rounds_offsets() {
        let plan = plan_memory(&[iv(3, 0, 1), iv(3, 0, 1)], 16);
        assert_eq!(plan.offsets.iter().filter(|&&o| o % 16 != 0).count(), 0);
        assert_eq!(plan.arena, 32);
    }

    #[test]
    fn empty_schedule() {
        check(&[], 0, 0);
    }
}
