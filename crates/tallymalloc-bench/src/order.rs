//! The order in which a measurement's runs go: the bench's workloads, the Python suite's scripts
//! and `tallymalloc compare` all run each allocator once per repetition, in an order of this.

/// The order `count` allocators (or setups) run in for one workload in one repetition: shuffled
/// anew for each (deterministically), so that no allocator always runs first or right after the
/// same other one. What a program leaves behind (the kernel's free memory, in which pages are
/// recycled and which huge pages are at hand) can change the next one's time: large-random
/// under tallymalloc with huge pages took 0.10 to 0.66 s run to run on one machine.
pub fn run_order(count: usize, rep: usize, position: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    // xorshift64, seeded by the repetition and the workload; statistical quality is not needed.
    let mut state = 0x9E37_79B9_7F4A_7C15 ^ ((rep as u64) << 32 | position as u64);
    for last in (1..count).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(last, (state % (last as u64 + 1)) as usize);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::run_order;

    #[test]
    fn run_orders_are_permutations_that_vary_who_runs_first_and_who_runs_before_whom() {
        let count = 9;
        let mut firsts = std::collections::BTreeSet::new();
        let mut before_second = std::collections::BTreeSet::new();
        for rep in 0..5 {
            for position in 0..20 {
                let order = run_order(count, rep, position);
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..count).collect::<Vec<_>>());
                assert_eq!(order, run_order(count, rep, position), "not deterministic");
                firsts.insert(order[0]);
                let at = order.iter().position(|&i| i == 1).unwrap();
                before_second.insert(if at == 0 { None } else { Some(order[at - 1]) });
            }
        }
        assert_eq!(firsts.len(), count, "some allocator never runs first");
        assert!(before_second.len() >= count - 1, "{before_second:?}");
        assert_eq!(run_order(1, 3, 4), [0]);
        assert!(run_order(0, 0, 0).is_empty());
    }
}
