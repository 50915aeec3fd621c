//! Injected mapping faults from Rust: allocations that need new memory return `None`, a
//! realloc that cannot grow keeps its block, and everything works again once faults stop,
//! with nothing lost. (A file of its own: faults are process-wide.)

use tallymalloc::{Domain, FaultPlan};

#[test]
fn faults_fail_cleanly_and_the_allocator_recovers() {
    let domain = Domain::register("faults").unwrap();
    let size = 1 << 20;
    let block = domain.alloc(size).unwrap().as_ptr();
    // SAFETY: a live block of `size` bytes, written and read within bounds, freed once.
    unsafe {
        std::ptr::write_bytes(block, 0x5A, size);
        let before = tallymalloc::injected_failures();
        tallymalloc::set_fault_plan(Some(FaultPlan::After {
            after: 0,
            count: u64::MAX,
        }));
        // Huge blocks (and sizes no cache holds) need a fresh mapping.
        assert!(domain.alloc(40 << 20).is_none());
        assert!(domain.realloc(block, 40 << 20).is_none());
        tallymalloc::set_fault_plan(None);
        assert!(tallymalloc::injected_failures() >= before + 2);
        assert!(
            (0..size).step_by(4093).all(|i| *block.add(i) == 0x5A),
            "realloc changed it"
        );
        let grown = domain.realloc(block, 40 << 20).expect("recovered");
        assert_eq!(*grown.as_ptr().add(size - 1), 0x5A);
        domain.free(grown.as_ptr());
    }
    let figures = *tallymalloc::stats().domain(domain);
    assert_eq!((figures.live_blocks, figures.live_usable_bytes), (0, 0));
    assert_eq!(figures.allocations, figures.frees);
}
