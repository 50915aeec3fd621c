//! A size class's serving page keeps its memory through a loop of malloc and free (it never
//! reports itself empty on a free), but is given back once its thread's housekeeping finds it
//! idle. A test binary of its own: it counts the process's pages in use.

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
fn an_idle_serving_page_is_given_back() {
    // On a thread of its own, whose heap starts with no pages; the test's main thread only
    // waits meanwhile.
    std::thread::spawn(|| {
        let before = pages_in_use();
        // One page of 4 KiB blocks, emptied: it stays, as the class's serving page.
        free_all(allocate(16, 4096));
        assert_eq!(pages_in_use(), before + 1, "the serving page is kept");
        for _ in 0..1000 {
            free_all(allocate(1, 4096));
        }
        assert_eq!(pages_in_use(), before + 1, "and reused, not fetched again");
        // Thousands of slow paths in another class (each carves 4 KiB of 48-byte blocks)
        // run the thread's housekeeping, whose idle sweep gives the 4 KiB page back. The
        // 48-byte pages all empty too, and all but the serving one go back on their last free.
        free_all(allocate(100_000, 48));
        assert_eq!(
            pages_in_use(),
            before + 1,
            "the idle 4 KiB page went back; the 48-byte class's serving page stays"
        );
    })
    .join()
    .unwrap();
}
