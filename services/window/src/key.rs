//! Keys hashed once: a series key is hashed when it is read, and every stage after
//! that (window, each cascaded window, the sink) reuses the hash instead of hashing the
//! string again.
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

fn hasher() -> &'static foldhash::quality::RandomState {
    // Seeded per process: crafted keys cannot aim at collisions.
    static S: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    S.get_or_init(foldhash::quality::RandomState::default)
}

/// What the window operators key their state by. Any hashable key works (one line opts
/// a type in); a key behind a shared pointer says where its memory is, so the operators
/// can fetch it for a batch of keys at once.
pub trait WindowKey: Clone + Hash + Eq + 'static {
    /// Asks the CPU to fetch what comparing, cloning or dropping the key touches.
    fn prefetch(&self) {}
}

impl WindowKey for HashedKey {
    #[inline]
    fn prefetch(&self) {
        self.text.prefetch();
    }
}

impl<T: ?Sized + Hash + Eq + 'static> WindowKey for Arc<T> {
    #[inline]
    fn prefetch(&self) {
        let data = Arc::as_ptr(self).cast::<u8>();
        // The reference counts sit just before the data, possibly on the line before.
        crate::operators::window::prefetch(data.wrapping_sub(2 * std::mem::size_of::<usize>()));
        crate::operators::window::prefetch(data);
    }
}

impl WindowKey for String {}
impl WindowKey for &'static str {}
impl WindowKey for u64 {}

/// A string key with its hash.
#[derive(Clone)]
pub struct HashedKey {
    hash: u64,
    text: Arc<str>,
}

impl HashedKey {
    pub fn new(text: Arc<str>) -> Self {
        Self {
            hash: hasher().hash_one(&*text),
            text,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn text(&self) -> &Arc<str> {
        &self.text
    }
}

impl From<&str> for HashedKey {
    fn from(s: &str) -> Self {
        Self::new(Arc::from(s))
    }
}

impl From<String> for HashedKey {
    fn from(s: String) -> Self {
        Self::new(Arc::from(s))
    }
}

impl Hash for HashedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for HashedKey {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash && (Arc::ptr_eq(&self.text, &o.text) || self.text == o.text)
    }
}

impl Eq for HashedKey {}

impl PartialOrd for HashedKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for HashedKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.text.cmp(&o.text)
    }
}

impl std::ops::Deref for HashedKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for HashedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for HashedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_text_is_equal_key_and_hash() {
        let a = HashedKey::from("up{job=\"a\"}");
        let b = HashedKey::from(String::from("up{job=\"a\"}"));
        assert_eq!(a, b);
        let h = |k: &HashedKey| hasher().hash_one(k);
        assert_eq!(h(&a), h(&b));
        assert_ne!(a, HashedKey::from("up{job=\"b\"}"));
    }
}
