//! `version = "auto"`: a version derived from the function's own tokens, so that editing the
//! function gives it a new namespace and its old entries are no longer served.
//!
//! The signature (without the function's name, which the namespace holds already) and the
//! body, as parsed, are written out token by token in a fixed text form of this crate's own
//! (not `TokenStream`'s `Display`, whose spacing may change between compiler versions), hashed
//! with SHA-256, and the first 8 bytes name the version: `auto-` and 16 hex digits.
//! Whitespace and comments are not tokens, so reformatting changes nothing; any edit to a
//! token does. The pinned test below keeps the form from changing unnoticed.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::{format_ident, ToTokens};
use sha2::{Digest, Sha256};
use syn::{Block, Signature};

/// What `version = "auto"` becomes for the function with this signature and body.
pub(crate) fn auto(sig: &Signature, block: &Block) -> String {
    let mut sig = sig.clone();
    sig.ident = format_ident!("__cachier_fn");
    let mut text = String::new();
    write_tokens(sig.into_token_stream(), &mut text);
    text.push('\n');
    write_tokens(block.to_token_stream(), &mut text);
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("auto-{hex}")
}

/// `tokens` as text: identifiers and literals as written, each followed by a space;
/// punctuation by its character, followed by a space unless it is joined to the next one
/// (`&&` and `& &` differ); groups between their delimiters.
fn write_tokens(tokens: TokenStream, out: &mut String) {
    for token in tokens {
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ('(', ')'),
                    Delimiter::Brace => ('{', '}'),
                    Delimiter::Bracket => ('[', ']'),
                    Delimiter::None => ('\u{2}', '\u{3}'),
                };
                out.push(open);
                write_tokens(group.stream(), out);
                out.push(close);
            }
            TokenTree::Ident(ident) => {
                out.push_str(&ident.to_string());
                out.push(' ');
            }
            TokenTree::Punct(punct) => {
                out.push(punct.as_char());
                if punct.spacing() == Spacing::Alone {
                    out.push(' ');
                }
            }
            TokenTree::Literal(literal) => {
                out.push_str(&literal.to_string());
                out.push(' ');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::auto;

    fn version_of(source: &str) -> String {
        let f: syn::ItemFn = syn::parse_str(source).expect("a function");
        auto(&f.sig, &f.block)
    }

    #[test]
    fn the_version_is_pinned() {
        // Pinned: the same function must get the same version in every build, on every
        // compiler; a change here orphans every user's `version = "auto"` entries.
        assert_eq!(
            version_of("fn price(sku: String, n: u32) -> u64 { n as u64 * 999 }"),
            "auto-99e53f757db604d6"
        );
    }

    #[test]
    fn formatting_comments_and_the_name_do_not_count() {
        let plain = version_of("fn f(x: u64) -> u64 { x && y }");
        let reformatted = version_of(
            "fn   g(\n  x : u64 ,\n) ->u64 {\n  // a comment\n  x /* another */ &&\n y\n}",
        );
        // Only the trailing comma in the arguments differs in tokens.
        assert_ne!(plain, reformatted);
        let spaced = version_of("fn g(x : u64) ->u64 {\n  // a comment\n  x /* b */ &&\n y\n}");
        assert_eq!(plain, spaced);
    }

    #[test]
    fn any_edit_to_a_token_counts() {
        let base = version_of("fn f(x: u64) -> u64 { x + 1 }");
        for edited in [
            "fn f(x: u64) -> u64 { x + 2 }",
            "fn f(x: u64) -> u64 { x - 1 }",
            "fn f(y: u64) -> u64 { y + 1 }",
            "fn f(x: u32) -> u64 { x + 1 }",
            "fn f(x: u64) -> u32 { x + 1 }",
            "async fn f(x: u64) -> u64 { x + 1 }",
            "fn f(x: u64) -> u64 { (x + 1) }",
            "fn f(x: u64) -> u64 { x + 1u64 }",
            "fn f(x: u64) -> u64 { x + 1; }",
        ] {
            assert_ne!(version_of(edited), base, "{edited}");
        }
        assert_eq!(
            version_of("fn f(x: &u64) -> &&u64 { &&x }"),
            version_of("fn f(x: &u64) -> & &u64 { & &x }"),
            "the same expression, however it is spaced"
        );
        assert_ne!(
            version_of("fn f(x: bool, y: bool) -> bool { x && y }"),
            version_of("fn f(x: bool, y: bool) -> bool { x || y }"),
        );
        assert_ne!(
            version_of(r#"fn f() -> String { "a b".into() }"#),
            version_of(r#"fn f() -> String { "a  b".into() }"#),
            "literals count as written"
        );
    }
}
