//! The one intrusive doubly linked list of the allocator's own objects: page queues, a heap's
//! segments and its segments with free pages, the live heaps, the live stats counters, debug
//! mode's live blocks and quarantine. An object links through a [`Links`] field of its own, so
//! linking never allocates; an object on two lists at once has a field (and a tag type) for
//! each.
//!
//! Invariants:
//! - **L1**: an object is on at most one list of a tag at a time; its links for that tag are
//!   both null while it is on none (set so by [`Links::UNLINKED`] and by `remove`).
//! - **L2**: a list's `first` and `last` are both null or both the ends of a chain whose
//!   `next`/`prev` links agree, every member valid for as long as it is on the list.
//! - **L3**: whoever holds the list (its owner thread, or its lock) alone touches its members'
//!   links for that tag.

use core::marker::PhantomData;
use core::ptr;

/// An object's two links for one list.
#[repr(C)]
pub struct Links<T> {
    pub next: *mut T,
    pub prev: *mut T,
}

impl<T> Links<T> {
    /// The links of an object on no list (L1).
    pub const UNLINKED: Links<T> = Links {
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
    };
}

/// The default tag, for objects on one kind of list only.
pub enum Only {}

/// An object that can be on a [`List`] with tag `Tag`.
///
/// # Safety
/// `links` must return the address of a [`Links`] field of `this` that nothing but lists of
/// this tag writes, for every valid `this`.
pub unsafe trait Linked<Tag = Only>: Sized {
    /// The links of `this` for lists of `Tag`.
    ///
    /// # Safety
    /// `this` is valid.
    unsafe fn links(this: *mut Self) -> *mut Links<Self>;
}

/// A list of objects linked through their `Tag` links (L2).
pub struct List<T, Tag = Only> {
    first: *mut T,
    last: *mut T,
    tag: PhantomData<fn() -> Tag>,
}

impl<T, Tag> Clone for List<T, Tag> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, Tag> Copy for List<T, Tag> {}

impl<T: Linked<Tag>, Tag> List<T, Tag> {
    pub const EMPTY: List<T, Tag> = List {
        first: ptr::null_mut(),
        last: ptr::null_mut(),
        tag: PhantomData,
    };

    pub fn first(&self) -> *mut T {
        self.first
    }

    pub fn last(&self) -> *mut T {
        self.last
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_null()
    }

    /// The member after `item` (null after the last).
    ///
    /// # Safety
    /// `item` is on this list (L3: the caller holds it).
    pub unsafe fn next(item: *mut T) -> *mut T {
        // SAFETY: the caller's contract.
        unsafe { (*T::links(item)).next }
    }

    /// The member before `item` (null before the first).
    ///
    /// # Safety
    /// As [`List::next`].
    pub unsafe fn prev(item: *mut T) -> *mut T {
        // SAFETY: the caller's contract.
        unsafe { (*T::links(item)).prev }
    }

    /// # Safety
    /// `item` is valid and on no list of this tag (L1); the caller holds this list (L3).
    pub unsafe fn push_front(&mut self, item: *mut T) {
        // SAFETY: the caller's contract, and L2 for the current first member.
        unsafe {
            *T::links(item) = Links {
                next: self.first,
                prev: ptr::null_mut(),
            };
            if self.first.is_null() {
                self.last = item;
            } else {
                (*T::links(self.first)).prev = item;
            }
        }
        self.first = item;
    }

    /// # Safety
    /// As [`List::push_front`].
    pub unsafe fn push_back(&mut self, item: *mut T) {
        // SAFETY: the caller's contract, and L2 for the current last member.
        unsafe {
            *T::links(item) = Links {
                next: ptr::null_mut(),
                prev: self.last,
            };
            if self.last.is_null() {
                self.first = item;
            } else {
                (*T::links(self.last)).next = item;
            }
        }
        self.last = item;
    }

    /// Takes `item` off the list, leaving its links null (L1).
    ///
    /// # Safety
    /// `item` is on this list; the caller holds it (L3).
    pub unsafe fn remove(&mut self, item: *mut T) {
        // SAFETY: the caller's contract; L2 makes its neighbours valid members.
        unsafe {
            let Links { next, prev } = ptr::replace(T::links(item), Links::UNLINKED);
            if prev.is_null() {
                self.first = next;
            } else {
                (*T::links(prev)).next = next;
            }
            if next.is_null() {
                self.last = prev;
            } else {
                (*T::links(next)).prev = prev;
            }
        }
    }

    /// Takes the first member off the list; null if it is empty.
    ///
    /// # Safety
    /// The caller holds the list (L3).
    pub unsafe fn pop_front(&mut self) -> *mut T {
        let first = self.first;
        if !first.is_null() {
            // SAFETY: the first member is on this list.
            unsafe { self.remove(first) };
        }
        first
    }

    /// Empties the list, unlinking every member (L1).
    ///
    /// # Safety
    /// The caller holds the list (L3).
    pub unsafe fn clear(&mut self) {
        // SAFETY: the caller's contract.
        while !unsafe { self.pop_front() }.is_null() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Item {
        value: u32,
        links: Links<Item>,
        other: Links<Item>,
    }

    enum Other {}

    // SAFETY: `links` is Item's field for the default tag, `other` for `Other`.
    unsafe impl Linked for Item {
        unsafe fn links(this: *mut Self) -> *mut Links<Self> {
            // SAFETY: the caller's contract: `this` is valid.
            unsafe { &raw mut (*this).links }
        }
    }
    // SAFETY: as above.
    unsafe impl Linked<Other> for Item {
        unsafe fn links(this: *mut Self) -> *mut Links<Self> {
            // SAFETY: the caller's contract: `this` is valid.
            unsafe { &raw mut (*this).other }
        }
    }

    fn items(count: u32) -> Vec<Item> {
        (0..count)
            .map(|value| Item {
                value,
                links: Links::UNLINKED,
                other: Links::UNLINKED,
            })
            .collect()
    }

    /// The values from first to last, checking L2 on the way (each `prev` is the member before).
    fn values<Tag>(list: &List<Item, Tag>) -> Vec<u32>
    where
        Item: Linked<Tag>,
    {
        let mut values = Vec::new();
        let mut previous = ptr::null_mut();
        let mut item = list.first();
        // SAFETY: the test's items outlive the lists, and the test holds them.
        unsafe {
            while !item.is_null() {
                assert_eq!(List::<Item, Tag>::prev(item), previous, "prev link");
                values.push((*item).value);
                previous = item;
                item = List::<Item, Tag>::next(item);
            }
        }
        assert_eq!(list.last(), previous, "last");
        values
    }

    #[derive(Debug, Clone)]
    enum Operation {
        PushFront(usize),
        PushBack(usize),
        Remove(usize),
        PopFront,
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            (0..16usize).prop_map(Operation::PushFront),
            (0..16usize).prop_map(Operation::PushBack),
            (0..16usize).prop_map(Operation::Remove),
            Just(Operation::PopFront),
        ]
    }

    proptest! {
        /// Any sequence of operations leaves the list as a VecDeque model says, with every
        /// member's links consistent and every other object's links null (L1, L2); the second
        /// tag's list, built alongside in reverse, is never disturbed.
        #[test]
        fn list_matches_a_model(operations in proptest::collection::vec(operation(), 0..200)) {
            let mut storage = items(16);
            let base = storage.as_mut_ptr();
            let mut list: List<Item> = List::EMPTY;
            let mut other: List<Item, Other> = List::EMPTY;
            let mut model = std::collections::VecDeque::new();
            // SAFETY: indexes below 16 address the test's items, which outlive both lists.
            unsafe {
                for index in (0..16).rev() {
                    other.push_front(base.add(index));
                }
                for operation in operations {
                    match operation {
                        Operation::PushFront(index) if !model.contains(&(index as u32)) => {
                            list.push_front(base.add(index));
                            model.push_front(index as u32);
                        }
                        Operation::PushBack(index) if !model.contains(&(index as u32)) => {
                            list.push_back(base.add(index));
                            model.push_back(index as u32);
                        }
                        Operation::Remove(index) if model.contains(&(index as u32)) => {
                            list.remove(base.add(index));
                            model.retain(|&value| value != index as u32);
                        }
                        Operation::PopFront => {
                            let popped = list.pop_front();
                            let expected = model.pop_front();
                            prop_assert_eq!(
                                (!popped.is_null()).then(|| (*popped).value),
                                expected
                            );
                        }
                        _ => {}
                    }
                    prop_assert_eq!(values(&list), model.iter().copied().collect::<Vec<_>>());
                }
                for (index, item) in storage.iter().enumerate() {
                    if !model.contains(&(index as u32)) {
                        prop_assert!(item.links.next.is_null() && item.links.prev.is_null());
                    }
                }
                prop_assert_eq!(values(&other), (0..16).collect::<Vec<_>>());
                list.clear();
                prop_assert!(list.is_empty() && list.last().is_null());
                prop_assert!(storage.iter().all(|item| item.links.next.is_null()));
            }
        }
    }
}
