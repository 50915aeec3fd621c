//! Frees from threads that do not own the page: a lock-free push on `thread_free`, whose low
//! bits carry the delayed-free tag (P4) by which a full page's owner asks to hear of them.

use super::*;

/// What a remote free does beyond pushing on `thread_free`, kept in `thread_free`'s low bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum DelayedFree {
    /// Push on `thread_free`; the owner finds the block when it collects the page.
    None = 0,
    /// The page is full and out of its owner's sight: hand the block to the owner heap's
    /// delayed-free list instead, so the owner learns the page has room again.
    Use = 1,
    /// A remote thread is handing a block to the owner heap right now.
    Freeing = 2,
    /// The page has no owner heap (abandoned): never try to reach one.
    Never = 3,
}

pub(super) const TAG_MASK: usize = 3;

impl DelayedFree {
    fn from_tag(word: usize) -> Self {
        match word & TAG_MASK {
            0 => DelayedFree::None,
            1 => DelayedFree::Use,
            2 => DelayedFree::Freeing,
            _ => DelayedFree::Never,
        }
    }
}

impl Page {
    /// Frees `block` from a thread that does not own the page (any thread, lock-free). When
    /// the owner asked to hear of frees into this page (it was full, P4), the block goes to
    /// `hand_to_owner` instead, with the owner, which must put it on the owner's delayed-free
    /// list: the page does not know its owner's type (`domain_heap.rs`, which uses pages).
    ///
    /// # Safety
    /// `block` must be an allocated block of this in-use page.
    #[cold]
    pub unsafe fn free_remote(
        &self,
        block: *mut Block,
        hand_to_owner: impl FnOnce(*mut Owner, *mut Block),
    ) {
        let mut word = self.thread_free.load(Ordering::Relaxed);
        let notify_owner = loop {
            let tag = DelayedFree::from_tag(word);
            let (next_word, notify) = if tag == DelayedFree::Use {
                ((word & !TAG_MASK) | DelayedFree::Freeing as usize, true)
            } else {
                // The key is constant while the page serves blocks (E2).
                // SAFETY: the block is ours until published by the exchange below.
                unsafe {
                    (*block).next =
                        free_list::encode(self.key, block, (word & !TAG_MASK) as *mut Block)
                };
                (block as usize | (word & TAG_MASK), false)
            };
            match self.thread_free.compare_exchange_weak(
                word,
                next_word,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break notify,
                Err(current) => word = current,
            }
        };
        if notify_owner {
            // P4: while we hold the `Freeing` tag the owner can neither abandon this page nor
            // free its heap, so the heap pointer is valid.
            // A page with the `Use` tag is always owned by a heap.
            hand_to_owner(self.owner_heap(), block);
            self.finish_delayed_free();
        }
    }

    /// Secure mode's check before [`Self::free_remote`]: a block at the head of
    /// `thread_free` is free, so freeing it again is the double free that a non-owner can see
    /// without walking lists the owner may be changing.
    pub fn check_remote_free(&self, block: *mut Block) {
        if self.thread_free.load(Ordering::Relaxed) & !TAG_MASK == block as usize {
            secure::double_free(block as usize);
        }
    }

    /// Ends a remote thread's `Freeing` state. Only that thread changes the tag meanwhile
    /// (owners wait, other remote frees keep the tag), so this is a plain tag swap.
    fn finish_delayed_free(&self) {
        let mut word = self.thread_free.load(Ordering::Relaxed);
        loop {
            debug_assert_eq!(DelayedFree::from_tag(word), DelayedFree::Freeing);
            let next_word = (word & !TAG_MASK) | DelayedFree::None as usize;
            match self.thread_free.compare_exchange_weak(
                word,
                next_word,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Sets the delayed-free tag (owner only), waiting out a remote thread in the `Freeing`
    /// state (P4).
    pub fn set_delayed_free(&self, state: DelayedFree) {
        let mut word = self.thread_free.load(Ordering::Acquire);
        loop {
            let current = DelayedFree::from_tag(word);
            if current == DelayedFree::Freeing {
                crate::platform::os::yield_thread();
                word = self.thread_free.load(Ordering::Acquire);
                continue;
            }
            if current == state {
                return;
            }
            let next_word = (word & !TAG_MASK) | state as usize;
            match self.thread_free.compare_exchange_weak(
                word,
                next_word,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Asks remote frees to notify the owner (the page is about to leave the owner's sight),
    /// unless frees are already waiting on `thread_free`: then returns false and the owner
    /// should collect instead.
    pub fn try_request_delayed_free(&self) -> bool {
        let mut word = self.thread_free.load(Ordering::Acquire);
        loop {
            if word & !TAG_MASK != 0 {
                return false;
            }
            if DelayedFree::from_tag(word) == DelayedFree::Freeing {
                crate::platform::os::yield_thread();
                word = self.thread_free.load(Ordering::Acquire);
                continue;
            }
            let next_word = DelayedFree::Use as usize;
            match self.thread_free.compare_exchange_weak(
                word,
                next_word,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => word = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::page::tests::page_over;

    #[test]
    fn requesting_delayed_free_fails_while_frees_wait() {
        let mut buffer = vec![0u64; 64];
        let mut page = page_over(&mut buffer, 64);
        page.extend();
        let block = page.pop();
        assert!(page.try_request_delayed_free());
        page.set_delayed_free(DelayedFree::None);
        // SAFETY: `block` is an allocated block of the page.
        unsafe { page.free_remote(block, |_, _| unreachable!("no delayed free requested")) };
        assert!(!page.try_request_delayed_free());
    }
}
