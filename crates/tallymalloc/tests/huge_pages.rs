//! With `TALLYMALLOC_HUGE_PAGES=1` (off by default) a huge block's mapping, and the segments of
//! medium and large blocks, ask for transparent huge pages: the kernel lists the advice as `hg`
//! among the mapping's flags in `/proc/self/smaps`.

/// The `VmFlags` of the mapping of `/proc/self/smaps` that holds `address`.
fn flags_of_mapping_holding(address: usize) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = range.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                inside = (start..end).contains(&address);
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_owned());
            }
        }
    }
    None
}

#[test]
fn huge_blocks_ask_for_transparent_huge_pages() {
    let setting = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    if setting.is_err() || setting.is_ok_and(|s| s.contains("[never]")) {
        return; // no transparent huge pages on this kernel: the advice is refused
    }
    assert!(!tallymalloc::huge_pages(), "off by default");
    // An odd size, which no cached mapping serves with its old advice.
    let plain = tallymalloc::malloc(9 << 20 | 12288)
        .expect("memory")
        .as_ptr();
    let flags = flags_of_mapping_holding(plain as usize).expect("the block's mapping");
    assert!(!flags.split(' ').any(|flag| flag == "hg"), "{flags}");
    tallymalloc::set_huge_pages(true);
    let block = tallymalloc::malloc(8 << 20).expect("memory").as_ptr();
    let flags = flags_of_mapping_holding(block as usize).expect("the block's mapping");
    assert!(flags.split(' ').any(|flag| flag == "hg"), "{flags}");
    // A small block's page is not advised.
    let small = tallymalloc::malloc(100).expect("memory").as_ptr();
    let flags = flags_of_mapping_holding(small as usize).expect("the small block's mapping");
    assert!(!flags.split(' ').any(|flag| flag == "hg"), "{flags}");
    // Medium and large blocks' segments are (the first of their kind in this process, so
    // made after the option was set).
    let medium = tallymalloc::malloc(20 << 10).expect("memory").as_ptr();
    let large = tallymalloc::malloc(100 << 10).expect("memory").as_ptr();
    for (name, address) in [("medium", medium), ("large", large)] {
        let flags = flags_of_mapping_holding(address as usize).expect("the block's mapping");
        assert!(flags.split(' ').any(|flag| flag == "hg"), "{name}: {flags}");
    }
    // SAFETY: live blocks of ours, freed once.
    unsafe {
        tallymalloc::free(block);
        tallymalloc::free(small);
        tallymalloc::free(plain);
        tallymalloc::free(medium);
        tallymalloc::free(large);
    }
}
