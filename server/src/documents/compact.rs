//! Vectors that stay small for the small collections every open document keeps (its
//! connections, its presence table): most documents hold one or two entries, and a plain `Vec`
//! reserves four slots on its first push and keeps its largest size forever.

/// Appends `item`, doubling the capacity from one slot when full.
pub fn push<T>(items: &mut Vec<T>, item: T) {
    if items.len() == items.capacity() {
        items.reserve_exact(items.len().max(1));
    }
    items.push(item);
}

/// Removes the item at `index` (order is not kept) and gives back memory once the vector is
/// mostly empty.
pub fn swap_remove<T>(items: &mut Vec<T>, index: usize) -> T {
    let item = items.swap_remove(index);
    release(items);
    item
}

/// Gives back memory once `items` uses under a quarter of its capacity.
pub fn release<T>(items: &mut Vec<T>) {
    if items.len() * 4 < items.capacity() {
        items.shrink_to(items.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_from_one_slot_and_shrinks_when_mostly_empty() {
        let mut v = Vec::new();
        push(&mut v, 1);
        assert_eq!(v.capacity(), 1);
        push(&mut v, 2);
        push(&mut v, 3);
        assert_eq!(v.capacity(), 4);
        for i in 4..=16 {
            push(&mut v, i);
        }
        assert_eq!(v.capacity(), 16);
        while v.len() > 3 {
            swap_remove(&mut v, 0);
        }
        assert!(v.capacity() <= 8, "capacity {}", v.capacity());
        let mut rest: Vec<i32> = v.clone();
        rest.sort_unstable();
        assert_eq!(rest.len(), 3);
        while !v.is_empty() {
            swap_remove(&mut v, 0);
        }
        assert_eq!(v.capacity(), 0);
    }
}
