//! The `#[cachier(...)]` attribute of [cachier-rs](https://docs.rs/cachier-rs): memoize a `fn`
//! or `async fn`. Use it through `cachier-rs`, which re-exports it as `cachier::cachier`; every
//! parameter, the items it generates, methods and `impl` blocks are documented on
//! [`macro@cachier`].
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod args;
mod context;
mod expand;
mod version;

use proc_macro::TokenStream;
use quote::quote;

/// Memoizes a `fn` or `async fn` with cachier; on an `impl` block, lets the `#[cachier(...)]`
/// functions inside be associated functions without `self`.
///
#[doc = include_str!("../README.md")]
#[proc_macro_attribute]
pub fn cachier(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    let item = proc_macro2::TokenStream::from(item);
    let expanded = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(f)) => args::Args::parse(attr).and_then(|args| {
            if let Some(ty) = context::plain_impl_of(&f.sig.ident.to_string()) {
                return Err(syn::Error::new_spanned(
                    &f.sig.ident,
                    format!(
                        "#[cachier] on the associated function `{}` needs `#[cachier]` on its `impl` block too: write `#[cachier] impl {ty} {{ ... }}` (the macro reaches the functions it generates through `Self::`, and a function's attribute cannot see that it is inside an `impl`)",
                        f.sig.ident
                    ),
                ));
            }
            let func = expand::Func {
                attrs: f.attrs,
                vis: f.vis,
                sig: f.sig,
                block: f.block,
            };
            expand::expand_fn(args, func, false)
        }),
        Ok(syn::Item::Impl(block)) => {
            if attr.is_empty() {
                expand::expand_impl(block)
            } else {
                Err(syn::Error::new_spanned(
                    attr,
                    "`#[cachier]` on an impl block takes no parameters: give them on each function",
                ))
            }
        }
        Ok(other) => Err(syn::Error::new_spanned(
            item_head(&other),
            "#[cachier] applies to a `fn`, an `async fn`, or an `impl` block holding `#[cachier(...)]` functions",
        )),
        Err(error) => Err(error),
    };
    match expanded {
        Ok(tokens) => tokens.into(),
        // The item stays as written, so that its uses still resolve: only this error shows.
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#error #item).into()
        }
    }
}

/// The tokens before an item's body, for errors about the item as a whole.
fn item_head(item: &syn::Item) -> proc_macro2::TokenStream {
    use quote::ToTokens;
    match item {
        syn::Item::Struct(s) => {
            let (vis, token, ident) = (&s.vis, &s.struct_token, &s.ident);
            quote!(#vis #token #ident)
        }
        syn::Item::Enum(e) => {
            let (vis, token, ident) = (&e.vis, &e.enum_token, &e.ident);
            quote!(#vis #token #ident)
        }
        other => other.to_token_stream(),
    }
}
