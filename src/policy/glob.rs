//! Wildcard patterns (`*`, `?`) as IAM matches them, in time linear in the text: a policy's
//! pattern and a request's values are both a caller's choice (up to 32 KiB of policy and a
//! request body's worth of encryption context), and matching runs on the request's thread, so
//! a pattern that backtracks (`*aaaa…b` against `aaaa…`) would let one tenant stall every
//! other's calls.

/// One character of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// `*`: any run of characters.
    Any,
    /// `?`: any one character.
    One,
    Char(char),
}

/// A pattern's text as its characters, `*` and `?` as wildcards.
pub(crate) fn tokens(pattern: &str) -> impl Iterator<Item = Tok> + '_ {
    pattern.chars().map(|c| match c {
        '*' => Tok::Any,
        '?' => Tok::One,
        c => Tok::Char(c),
    })
}

/// `*` matches any run of characters, `?` any one character.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    if ignore_case {
        let p: Vec<Tok> = tokens(&pattern.to_lowercase()).collect();
        glob_tokens(&p, &text.to_lowercase().chars().collect::<Vec<_>>())
    } else {
        let p: Vec<Tok> = tokens(pattern).collect();
        glob_tokens(&p, &text.chars().collect::<Vec<_>>())
    }
}

/// [`glob`] of a pattern already split into its characters. The pattern is cut at its `*`s:
/// the first piece must start the text, the last must end it, and each one between is found
/// leftmost after the one before (leftmost is never worse for what follows), each search
/// linear in the text.
pub(crate) fn glob_tokens(p: &[Tok], t: &[char]) -> bool {
    let pieces: Vec<&[Tok]> = p.split(|x| *x == Tok::Any).collect();
    let (first, rest) = pieces
        .split_first()
        .expect("split yields one piece at least");
    let Some((last, middle)) = rest.split_last() else {
        return t.len() == first.len() && at(first, t);
    };
    if t.len() < first.len() + last.len() || !at(first, t) || !at(last, &t[t.len() - last.len()..])
    {
        return false;
    }
    let end = t.len() - last.len();
    let mut from = first.len();
    for piece in middle.iter().filter(|x| !x.is_empty()) {
        match find(piece, &t[from..end]) {
            Some(i) => from += i + piece.len(),
            None => return false,
        }
    }
    true
}

/// Whether `piece` (no `*`) matches the start of `t`.
fn at(piece: &[Tok], t: &[char]) -> bool {
    piece.len() <= t.len()
        && piece.iter().zip(t).all(|(p, c)| match p {
            Tok::One => true,
            Tok::Char(x) => x == c,
            Tok::Any => false,
        })
}

/// The first position of `piece` (no `*`, not empty) in `t`: Knuth–Morris–Pratt for a piece of
/// characters, shift-and (one bit a character of the piece) for one with `?`.
fn find(piece: &[Tok], t: &[char]) -> Option<usize> {
    if piece.len() > t.len() {
        return None;
    }
    if piece.contains(&Tok::One) {
        return shift_and(piece, t);
    }
    let chars: Vec<char> = piece
        .iter()
        .map(|x| match x {
            Tok::Char(c) => *c,
            _ => unreachable!("a piece without `?` or `*` holds characters only"),
        })
        .collect();
    let mut fail = vec![0usize; chars.len()];
    let mut k = 0;
    for i in 1..chars.len() {
        while k > 0 && chars[i] != chars[k] {
            k = fail[k - 1];
        }
        if chars[i] == chars[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let mut k = 0;
    for (i, c) in t.iter().enumerate() {
        while k > 0 && *c != chars[k] {
            k = fail[k - 1];
        }
        if *c == chars[k] {
            k += 1;
        }
        if k == chars.len() {
            return Some(i + 1 - k);
        }
    }
    None
}

/// [`find`] of a piece with `?`: the set of the piece's prefixes that end at each character of
/// the text, as bits (a word per 64 characters of the piece).
fn shift_and(piece: &[Tok], t: &[char]) -> Option<usize> {
    let words = piece.len().div_ceil(64);
    let mut any = vec![0u64; words];
    let mut by_char: std::collections::HashMap<char, Vec<u64>> = Default::default();
    for (j, x) in piece.iter().enumerate() {
        if *x == Tok::One {
            any[j / 64] |= 1 << (j % 64);
        }
    }
    for (j, x) in piece.iter().enumerate() {
        if let Tok::Char(c) = x {
            by_char.entry(*c).or_insert_with(|| any.clone())[j / 64] |= 1 << (j % 64);
        }
    }
    let (top_word, top_bit) = ((piece.len() - 1) / 64, (piece.len() - 1) % 64);
    let mut d = vec![0u64; words];
    for (i, c) in t.iter().enumerate() {
        let mask = by_char.get(c).unwrap_or(&any);
        let mut carry = 1u64;
        for (w, m) in d.iter_mut().zip(mask) {
            let next = *w >> 63;
            *w = ((*w << 1) | carry) & m;
            carry = next;
        }
        if d[top_word] >> top_bit & 1 == 1 {
            return Some(i + 1 - piece.len());
        }
    }
    None
}
