//! The domain table fills up with a clear error, in a process of its own (the table is
//! process-wide and never shrinks).

use tallymalloc::{Domain, DomainError, MAX_DOMAINS};

#[test]
fn a_full_table_refuses_new_names_and_keeps_old_ones() {
    let mut registered = Vec::new();
    loop {
        match Domain::register(&format!("table-{}", registered.len())) {
            Ok(domain) => registered.push(domain),
            Err(error) => {
                assert_eq!(error, DomainError::TableFull);
                break;
            }
        }
        assert!(registered.len() <= MAX_DOMAINS, "the table never filled");
    }
    assert_eq!(
        registered.len(),
        MAX_DOMAINS - 3,
        "raw, mem and obj hold three ids"
    );
    assert_eq!(Domain::register("table-0"), Ok(registered[0]));
    assert_eq!(Domain::register("mem"), Ok(Domain::MEM));
    // The last domain works like any other.
    let last = *registered.last().unwrap();
    assert_eq!(last.id(), MAX_DOMAINS - 1);
    let block = last.alloc(100).unwrap();
    // SAFETY: a live block of `last`.
    unsafe {
        assert_eq!(tallymalloc::domain_of(block.as_ptr()), last);
        last.free(block.as_ptr());
    }
    assert_eq!(tallymalloc::stats().domain(last).allocations, 1);
}
