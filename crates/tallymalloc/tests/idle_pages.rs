//! A size class's serving page keeps its memory through a loop of malloc and free (it never
//! reports itself empty on a free), and `collect` gives it back once idle. A test binary of
//! its own: it counts the process's pages in use.

fn pages_in_use() -> u64 {
    tallymalloc::stats().process.pages
}

fn allocate(count: usize, size: usize) -> Vec<usize> {
    (0..count)
        .map(|_| tallymalloc::malloc(size).expect("malloc").as_ptr() as usize)
        .collect()
}

fn free_all(blocks: Vec<usize>) {
    for block in blocks {
        // SAFETY: live blocks, each freed once.
        unsafe { tallymalloc::free(block as *mut u8) };
    }
}

#[test]
fn the_serving_page_stays_until_collected() {
    // On a thread of its own, whose heap starts with no pages; the test's main thread only
    // waits meanwhile.
    std::thread::spawn(|| {
        let before = pages_in_use();
        // Two pages of 4 KiB blocks, emptied: the first to empty goes back on its last free,
        // the class's serving page stays.
        free_all(allocate(32, 4096));
        assert_eq!(pages_in_use(), before + 1, "the serving page is kept");
        for _ in 0..1000 {
            free_all(allocate(1, 4096));
        }
        assert_eq!(pages_in_use(), before + 1, "and reused, not fetched again");
        tallymalloc::collect();
        assert_eq!(pages_in_use(), before, "collect gives it back");
    })
    .join()
    .unwrap();
}
