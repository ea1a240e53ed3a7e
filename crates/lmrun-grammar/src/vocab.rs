//! A model's vocabulary as a byte trie, and the token bit set masks are written into.
//!
//! This module exists so that a mask over a 262,144-token vocabulary is one walk over shared
//! prefixes instead of 262,144 separate runs of the grammar: tokens are sorted by their bytes
//! and laid out as a trie in preorder (node `i`'s subtree is `i..end[i]`), so a walk can skip a
//! whole subtree the moment the grammar refuses its prefix. It is built once per vocabulary
//! and shared by every constraint over it.

/// The tokens of a model as byte strings, with its end-of-generation ids, arranged as a trie.
#[derive(Debug, Clone)]
pub struct Vocab {
    n_tokens: usize,
    eog: Vec<u32>,
    token_offsets: Vec<u32>,
    token_bytes: Vec<u8>,
    pub(crate) node_byte: Vec<u8>,
    pub(crate) node_depth: Vec<u16>,
    pub(crate) node_end: Vec<u32>,
    /// Tokens ending at node `i` are `node_tokens[node_tok_start[i]..node_tok_start[i + 1]]`.
    pub(crate) node_tok_start: Vec<u32>,
    pub(crate) node_tokens: Vec<u32>,
}

/// The longest token (in bytes) a vocabulary may hold; longer tokens are never allowed.
pub const MAX_TOKEN_BYTES: usize = u16::MAX as usize;

impl Vocab {
    /// Build from each token's bytes (index = token id) and the end-of-generation ids.
    ///
    /// Tokens with no bytes (control tokens, padding: pass them as empty) are never allowed by a
    /// grammar; end-of-generation tokens are allowed exactly when the grammar may end. Ids in
    /// `eog_ids` outside the vocabulary are ignored.
    pub fn new(tokens: Vec<Vec<u8>>, eog_ids: &[u32]) -> Vocab {
        let n_tokens = tokens.len();
        let mut token_offsets = Vec::with_capacity(n_tokens + 1);
        let total: usize = tokens.iter().map(Vec::len).sum();
        let mut token_bytes = Vec::with_capacity(total);
        token_offsets.push(0u32);
        for t in &tokens {
            token_bytes.extend_from_slice(t);
            token_offsets.push(u32::try_from(token_bytes.len()).unwrap_or(u32::MAX));
        }
        let eog: Vec<u32> = eog_ids
            .iter()
            .copied()
            .filter(|&i| (i as usize) < n_tokens)
            .collect();

        let mut ids: Vec<u32> = (0..n_tokens as u32)
            .filter(|&i| {
                let t = &tokens[i as usize];
                !t.is_empty() && t.len() <= MAX_TOKEN_BYTES && !eog.contains(&i)
            })
            .collect();
        ids.sort_unstable_by(|&a, &b| tokens[a as usize].cmp(&tokens[b as usize]));

        let mut node_byte = vec![0u8];
        let mut node_depth = vec![0u16];
        let mut node_end = vec![0u32];
        let mut owner: Vec<u32> = Vec::with_capacity(ids.len());
        let mut path: Vec<u32> = Vec::new();
        let mut prev: &[u8] = &[];
        for &id in &ids {
            let t = tokens[id as usize].as_slice();
            let lcp = prev.iter().zip(t).take_while(|(a, b)| a == b).count();
            while path.len() > lcp {
                if let Some(n) = path.pop() {
                    node_end[n as usize] = node_byte.len() as u32;
                }
            }
            for (d, &b) in t.iter().enumerate().skip(lcp) {
                path.push(node_byte.len() as u32);
                node_byte.push(b);
                node_depth.push((d + 1) as u16);
                node_end.push(0);
            }
            owner.push(path.last().copied().unwrap_or(0));
            prev = t;
        }
        let n_nodes = node_byte.len();
        for n in path.drain(..) {
            node_end[n as usize] = n_nodes as u32;
        }
        node_end[0] = n_nodes as u32;
        // `owner` is non-decreasing (sorted tokens visit nodes in preorder).
        let mut node_tok_start = vec![0u32; n_nodes + 1];
        for &o in &owner {
            node_tok_start[o as usize + 1] += 1;
        }
        for i in 0..n_nodes {
            node_tok_start[i + 1] += node_tok_start[i];
        }
        Vocab {
            n_tokens,
            eog,
            token_offsets,
            token_bytes,
            node_byte,
            node_depth,
            node_end,
            node_tok_start,
            node_tokens: ids,
        }
    }

    /// Number of tokens (ids are `0..len()`).
    pub fn len(&self) -> usize {
        self.n_tokens
    }

    /// Whether the vocabulary has no tokens.
    pub fn is_empty(&self) -> bool {
        self.n_tokens == 0
    }

    /// The bytes of token `id` (empty for unknown ids and byte-less tokens).
    pub fn token(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.token_offsets.get(i), self.token_offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self.token_bytes.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The end-of-generation ids.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Number of trie nodes (root included): a measure of the work a full mask walk can do.
    pub fn trie_nodes(&self) -> usize {
        self.node_byte.len()
    }

    #[inline]
    pub(crate) fn tokens_at(&self, node: usize) -> &[u32] {
        &self.node_tokens
            [self.node_tok_start[node] as usize..self.node_tok_start[node + 1] as usize]
    }
}

/// A set of token ids as a bit set: what [`crate::Constraint::allowed`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    words: Vec<u64>,
    len: usize,
}

impl TokenSet {
    /// An empty set over ids `0..n_tokens`.
    pub fn new(n_tokens: usize) -> TokenSet {
        TokenSet {
            words: vec![0; n_tokens.div_ceil(64)],
            len: n_tokens,
        }
    }

    /// The size of the id space (not the number of members; see [`TokenSet::count`]).
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Remove every member.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }

    /// Resize the id space to `n_tokens` and clear.
    pub fn reset(&mut self, n_tokens: usize) {
        self.words.clear();
        self.words.resize(n_tokens.div_ceil(64), 0);
        self.len = n_tokens;
    }

    /// Add `id` (ignored when out of range).
    #[inline]
    pub fn insert(&mut self, id: u32) {
        if let Some(w) = self.words.get_mut(id as usize / 64) {
            *w |= 1u64 << (id % 64);
        }
    }

    /// Whether `id` is a member.
    #[inline]
    pub fn contains(&self, id: u32) -> bool {
        self.words
            .get(id as usize / 64)
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }

    /// Number of members.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + b)
            })
        })
    }

    /// The raw words (bit `i % 64` of word `i / 64` is id `i`): for applying the mask to
    /// logits without a call per id.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Add every member of `other` (which must have the same id space).
    pub(crate) fn union_words(&mut self, other: &[u64]) {
        for (a, b) in self.words.iter_mut().zip(other) {
            *a |= b;
        }
    }
}
