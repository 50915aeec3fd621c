//! A heap's segments (H3): its lists of segments and of those with a free page, its spares,
//! the warm free pages it hands out first, and the purge schedule of its free pages (H4).

use super::*;

impl HeapState {
    /// Adds an owned segment to `segments`, and to `with_free` if it has a free page (H3).
    pub(super) fn link_segment(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours and on no list.
        unsafe {
            self.segments.push_front(segment);
            (*segment).in_with_free_list = false;
            if (*segment).has_free_page() {
                self.link_with_free(segment);
            }
        }
    }

    pub(super) fn unlink_segment(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours and on `segments`.
        unsafe {
            if (*segment).in_with_free_list {
                self.unlink_with_free(segment);
            }
            self.segments.remove(segment);
        }
    }

    pub(super) fn link_with_free(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours and not on the list.
        unsafe {
            let kind = (*segment).kind;
            if kind == SegmentKind::Large || (*segment).in_with_free_list {
                return;
            }
            self.with_free[kind as usize].push_front(segment);
            (*segment).in_with_free_list = true;
        }
    }

    pub(super) fn unlink_with_free(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours and on the list of its kind.
        unsafe {
            self.with_free[(*segment).kind as usize].remove(segment);
            (*segment).in_with_free_list = false;
        }
    }

    /// The most recently freed page of `kind` whose memory is still committed, if one of the
    /// last few freed is of that kind, in a segment in use or the newest spare. Reusing the
    /// warmest page first leaves the coldest to the purge: taking the lowest free index of the
    /// first segment with room instead, a program that frees in batches uses a different set
    /// of pages each round, and those left out are purged and faulted back
    /// (docs/MEASUREMENTS.md, "Warm pages first").
    pub(super) fn take_warm_page(&mut self, kind: SegmentKind) -> *mut Page {
        const LOOK_AT: usize = 8;
        if kind == SegmentKind::Large {
            // One page a segment: a free one is a spare's, and `take_page` pops the newest.
            return ptr::null_mut();
        }
        let mut queue = self.purge_queue();
        let mut page = queue.0.last();
        for _ in 0..LOOK_AT {
            if page.is_null() {
                break;
            }
            // SAFETY: H4: pages on the purge list are free pages of our segments (or spares).
            unsafe {
                let segment = segment::segment_of((*page).area);
                // A segment with no page in use is a spare; the last one emptied, on top of
                // the spares, comes back into use for it.
                let usable = (*segment).kind == kind
                    && ((*segment).used_pages > 0
                        || (segment == self.spares.first() && !self.pop_spare().is_null() && {
                            self.link_segment(segment);
                            true
                        }));
                if usable {
                    // Off the queue first (H4), then out of the segment.
                    queue.0.remove(page);
                    (*page).purge_pending = false;
                    (*segment).take_page_at((*page).index as usize);
                    if !(*segment).has_free_page() {
                        self.unlink_with_free(segment);
                    }
                    return page;
                }
                page = PageQueue::prev(page);
            }
        }
        ptr::null_mut()
    }

    /// Queues a free page's memory to go back to the OS after the purge delay (H4).
    pub(super) fn schedule_purge(&mut self, page: *mut Page) {
        // SAFETY: H1: a free page of ours.
        unsafe {
            if (*page).memory_is_zero {
                return;
            }
            let now = os::monotonic_millis();
            let delay = pace::millis(now);
            if delay == 0 {
                segment::decommit_page(&mut *page);
                return;
            }
            let mut queue = self.purge_queue();
            (*page).purge_at = now + delay;
            (*page).purge_pending = true;
            queue.0.push_back(page);
        }
    }

    /// The heap's purge queue, locked (H4).
    pub(super) fn purge_queue(&self) -> SpinGuard<'static, PurgeQueue> {
        // SAFETY: `this` is the heap this state belongs to, which outlives any use of it.
        unsafe { (*self.this).purge.lock() }
    }

    /// Takes the first free page of one of our segments, off the purge queue first (H4).
    pub(super) fn take_free_page(&mut self, segment: *mut Segment) -> *mut Page {
        // SAFETY: H3: the segment is ours.
        unsafe {
            let page = (*segment).first_free_page();
            if !page.is_null() {
                if (*page).memory_is_zero && (*page).purge_at != 0 {
                    // Purged, and wanted again (purge/pace.rs).
                    pace::note_wanted_again((*page).purge_at, os::monotonic_millis());
                }
                self.cancel_purge(page);
                (*segment).take_page_at((*page).index as usize);
            }
            page
        }
    }

    pub(super) fn cancel_purge(&mut self, page: *mut Page) {
        let mut queue = self.purge_queue();
        // SAFETY: H4: a pending page is on our purge queue, reached under its lock.
        unsafe {
            if (*page).purge_pending {
                queue.0.remove(page);
                (*page).purge_pending = false;
            }
        }
    }

    pub(super) fn cancel_purges_of(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours.
        unsafe {
            for index in 0..(*segment).page_count as usize {
                self.cancel_purge(&mut (*segment).pages[index]);
            }
        }
    }

    /// A segment's last page was freed: keep it as a spare or release it. Spares keep their
    /// pages on the purge schedule, so a program that frees and reallocates megabytes at a time
    /// reuses them warm, and an idle one still gives the memory back after the purge delay.
    /// (Decommitting every spare but the first at once faulted a batch loop's second segment
    /// back in every round: docs/MEASUREMENTS.md, "Spares".)
    pub(super) fn segment_emptied(&mut self, segment: *mut Segment) {
        self.unlink_segment(segment);
        if self.spare_count < MAX_SPARES {
            // SAFETY: H3: the segment is ours, empty and on no list.
            unsafe { self.spares.push_front(segment) };
            self.spare_count += 1;
            return;
        }
        self.cancel_purges_of(segment);
        // SAFETY: the segment is empty (S4) and on none of our lists now.
        unsafe { Segment::release(segment) };
    }

    /// Gives an empty segment's memory back in one `madvise` and lays it out as `kind`.
    pub(super) fn decommit_segment(&mut self, segment: *mut Segment, kind: SegmentKind) {
        self.cancel_purges_of(segment);
        // An empty segment may be laid out again (S2).
        // SAFETY: H3: the segment is ours, empty and on no list.
        unsafe {
            let area = (segment as *mut u8).add(HEADER_RESERVE);
            let zeroed = os::decommit(area, SEGMENT_SIZE - HEADER_RESERVE);
            (*segment).lay_out(kind, zeroed);
        }
    }

    /// A spare laid out for `kind` if there is one (re-laying out another decommits it), or
    /// else the newest spare.
    pub(super) fn pop_spare_for(&mut self, kind: SegmentKind) -> *mut Segment {
        let mut spare = self.spares.first();
        // SAFETY: H3: spares are ours, and on `spares`.
        unsafe {
            while !spare.is_null() {
                if (*spare).kind == kind {
                    self.spares.remove(spare);
                    self.spare_count -= 1;
                    return spare;
                }
                spare = List::<Segment>::next(spare);
            }
        }
        self.pop_spare()
    }

    pub(super) fn pop_spare(&mut self) -> *mut Segment {
        // SAFETY: H3: spares are ours.
        let spare = unsafe { self.spares.pop_front() };
        if !spare.is_null() {
            self.spare_count -= 1;
        }
        spare
    }

    pub(super) fn release_spares(&mut self) {
        loop {
            let spare = self.pop_spare();
            if spare.is_null() {
                return;
            }
            self.cancel_purges_of(spare);
            // SAFETY: the spare is empty and on no list (H3).
            unsafe { Segment::release(spare) };
        }
    }

    pub(super) fn for_each_page(&mut self, mut visit: impl FnMut(&mut Page)) {
        let mut segment = self.segments.first();
        while !segment.is_null() {
            // SAFETY: H3: our segments and their pages are ours.
            unsafe {
                for index in 0..(*segment).page_count as usize {
                    let page = &mut (*segment).pages[index];
                    if page.in_use {
                        visit(page);
                    }
                }
                segment = List::<Segment>::next(segment);
            }
        }
    }
}
