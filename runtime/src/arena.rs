//! Borrowing a kernel's operands out of one arena.
//!
//! Generated code keeps every activation of a network in one `f32` arena at
//! offsets the compiler planned. A kernel call reads some ranges and writes
//! one; [`split`] hands out those borrows at once, checking that the
//! written range overlaps no read range (the plan guarantees it; the check
//! turns a planner bug into a panic instead of undefined behaviour).

/// `(offset, len)` of a range of the arena.
pub type Range = (usize, usize);

/// Borrows `inputs` shared and `output` mutably from `arena`.
///
/// # Panics
///
/// If a range is out of bounds or `output` overlaps an input (a planner
/// bug, never a user error).
#[inline]
pub fn split<const N: usize>(
    arena: &mut [f32],
    inputs: [Range; N],
    output: Range,
) -> ([&[f32]; N], &mut [f32]) {
    let len = arena.len();
    let (o_start, o_len) = output;
    let o_end = o_start
        .checked_add(o_len)
        .filter(|&e| e <= len)
        .expect("arena::split: output range out of bounds");
    for (i_start, i_len) in inputs {
        let i_end = i_start
            .checked_add(i_len)
            .filter(|&e| e <= len)
            .expect("arena::split: input range out of bounds");
        assert!(
            o_len == 0 || i_len == 0 || i_end <= o_start || o_end <= i_start,
            "arena::split: output [{o_start}, {o_end}) overlaps input [{i_start}, {i_end})"
        );
    }
    let base = arena.as_mut_ptr();
    // SAFETY: every range is in bounds (checked above), and the one mutable
    // range overlaps none of the shared ones, so no element is reachable
    // both through `out` and through an input slice. All borrows live no
    // longer than the `&mut arena` they come from.
    let ins = inputs.map(|(s, l)| unsafe { core::slice::from_raw_parts(base.add(s), l) });
    let out = unsafe { core::slice::from_raw_parts_mut(base.add(o_start), o_len) };
    (ins, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_ranges_are_lent() {
        let mut a: [f32; 8] = core::array::from_fn(|i| i as f32);
        let ([x, y], out) = split(&mut a, [(0, 2), (2, 2)], (4, 4));
        out[0] = x[1] + y[1];
        assert_eq!(a[4], 4.0);
    }

    #[test]
    #[should_panic(expected = "overlaps")]
    fn an_overlap_is_caught() {
        let mut a = [0.0f32; 8];
        let _ = split(&mut a, [(0, 4)], (3, 2));
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_is_caught() {
        let mut a = [0.0f32; 8];
        let _ = split(&mut a, [], (6, 4));
    }
}
