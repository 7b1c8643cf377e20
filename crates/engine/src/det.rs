//! Deterministic collections: a hash map whose hasher has fixed keys, so that even its
//! iteration order is the same in every process for the same inputs. It is used only for
//! lookups on the per-event path (DNs, crossRefIDs, calls); where an iteration decides an
//! output, the code sorts (`docs/architecture.md`, "Determinism").

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// A `HashMap` with a fixed-key hasher (SipHash-1-3 with zero keys).
pub type Map<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;
