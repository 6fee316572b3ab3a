//! The attribute's parameters: parsed, checked at compile time, and turned into builder calls.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, Token};

/// Every parameter, in the order builder calls are emitted.
const PARAMS: &[&str] = &[
    "name",
    "version",
    "backend",
    "shared_backend",
    "cache_dir",
    "separate_files",
    "stale_after",
    "next_time",
    "wait_for_calc_timeout",
    "allow_none",
    "entry_size_limit",
    "cleanup_stale",
    "cleanup_interval",
    "lease",
    "near_cache",
    "preview_args",
    "key",
    "allow_non_static_methods",
];

/// cachier's Python parameter names that are spelled differently here.
const RENAMED: &[(&str, &str)] = &[
    (
        "hash_func",
        "use `key = |args: &(..)| ...` (a closure over the argument tuple)",
    ),
    (
        "hash_params",
        "use `key = |args: &(..)| ...` (a closure over the argument tuple)",
    ),
    (
        "mongetter",
        "use `backend = cachier::backends::mongo::MongoBackend::...`",
    ),
    (
        "redis_client",
        "use `backend = cachier::backends::redis::RedisBackend::...`",
    ),
    (
        "sql_engine",
        "use `backend = cachier::backends::sql::SqlBackend::...`",
    ),
    (
        "pickle_reload",
        "the file backend always sees other processes' writes; remove it",
    ),
    ("enable_metrics", "not supported by the macro yet"),
    ("metrics_sampling_rate", "not supported by the macro yet"),
];

/// One `name` or `name = value` as written.
struct Raw {
    name: Ident,
    value: Option<Expr>,
}

impl Parse for Raw {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // Keywords too, so that `crate = ...` gets "unknown parameter", not a parse error.
        let name = input.call(Ident::parse_any)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Raw { name, value })
    }
}

/// The checked parameters.
pub(crate) struct Args {
    /// `.stale_after(...)` and the like, in [`PARAMS`] order.
    pub builder: Vec<TokenStream>,
    /// The namespace override.
    pub name: Option<Expr>,
    /// The key function (a closure or path taking `&(arg tuple)`).
    pub key: Option<Expr>,
    /// Opt-in to memoize `&self` methods (the receiver is not part of the key).
    pub allow_non_static_methods: bool,
    /// `version = "auto"`: the version is derived from the function's tokens (see
    /// [`crate::version`]), once the function is known.
    pub auto_version: bool,
}

impl Args {
    /// Parses and checks the attribute's arguments; every problem is reported at once.
    pub fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let raw =
            syn::parse::Parser::parse2(Punctuated::<Raw, Token![,]>::parse_terminated, tokens)?;
        let mut errors = Errors::default();
        let mut seen: Vec<Raw> = Vec::new();
        for param in raw {
            let name = param.name.to_string();
            if let Some(first) = seen.iter().find(|p| p.name == param.name) {
                let mut error = syn::Error::new_spanned(
                    &param.name,
                    format!("duplicate parameter `{name}`: give it once"),
                );
                error.combine(syn::Error::new_spanned(&first.name, "first given here"));
                errors.push(error);
            } else if !PARAMS.contains(&name.as_str()) {
                let hint = RENAMED
                    .iter()
                    .find(|(old, _)| *old == name)
                    .map(|(_, hint)| format!("; {hint}"))
                    .unwrap_or_default();
                errors.push(syn::Error::new_spanned(
                    &param.name,
                    format!(
                        "unknown parameter `{name}`{hint}\n  expected one of: {}",
                        PARAMS.join(", ")
                    ),
                ));
            } else {
                seen.push(param);
            }
        }
        seen.sort_by_key(|p| PARAMS.iter().position(|n| p.name == n));

        let mut args = Args {
            builder: Vec::new(),
            name: None,
            key: None,
            allow_non_static_methods: false,
            auto_version: false,
        };
        let explicit_backend = seen
            .iter()
            .find(|p| p.name == "backend" || p.name == "shared_backend");
        if let Some(backend) = explicit_backend {
            for local in seen
                .iter()
                .filter(|p| p.name == "cache_dir" || p.name == "separate_files")
            {
                let mut error = syn::Error::new_spanned(
                    &local.name,
                    format!(
                        "`{}` configures the default file backend and cannot be combined with `{}`; configure the backend you pass instead",
                        local.name, backend.name
                    ),
                );
                error.combine(syn::Error::new_spanned(
                    &backend.name,
                    "the backend is given here",
                ));
                errors.push(error);
            }
        }
        if let (Some(a), Some(b)) = (
            seen.iter().find(|p| p.name == "backend"),
            seen.iter().find(|p| p.name == "shared_backend"),
        ) {
            let _ = a;
            errors.push(syn::Error::new_spanned(
                &b.name,
                "give either `backend` (a value implementing `cachier::store::Backend`) or `shared_backend` (an `Arc<dyn cachier::store::Backend>`), not both",
            ));
        }

        for param in seen {
            let ident = &param.name;
            let span = ident.span();
            let name = ident.to_string();
            let result = match name.as_str() {
                "name" => required(&param).and_then(|value| {
                    if let Some(text) = lit_str(value) {
                        if text.trim().is_empty() {
                            return Err(syn::Error::new_spanned(
                        value, "`name` must not be empty"));
                        }
                    }
                    args.name = Some(value.clone());
                    Ok(())
                }),
                "key" => required(&param).map(|value| args.key = Some(value.clone())),
                "allow_non_static_methods" => match &param.value {
                    None => {
                        args.allow_non_static_methods = true;
                        Ok(())
                    }
                    Some(Expr::Lit(ExprLit {
                        lit: Lit::Bool(on), ..
                    })) => {
                        args.allow_non_static_methods = on.value;
                        Ok(())
                    }
                    Some(other) => Err(syn::Error::new_spanned(
                        other,
                        "`allow_non_static_methods` is decided at compile time: write it alone or `= true` / `= false`",
                    )),
                },
                "next_time" | "allow_none" | "separate_files" | "cleanup_stale"
                | "preview_args" => {
                    let value = match &param.value {
                        None => quote_spanned!(span=> true),
                        Some(value) => quote!(#value),
                    };
                    args.builder.push(quote_spanned!(span=> .#ident(#value)));
                    Ok(())
                }
                "stale_after" | "wait_for_calc_timeout" | "cleanup_interval" | "lease" => {
                    required(&param).and_then(|value| duration(&name, value)).map(|value| {
                        args.builder.push(quote_spanned!(span=> .#ident(#value)));
                    })
                }
                "near_cache" => {
                    // Alone or `= true`: the default size; `= false`: none; a number: that
                    // many entries; any other expression: a `NearCache`.
                    let near = match &param.value {
                        Some(Expr::Lit(ExprLit {
                            lit: Lit::Bool(on), ..
                        })) if !on.value => quote_spanned!(span=> ::cachier::NearCache::OFF),
                        None
                        | Some(Expr::Lit(ExprLit {
                            lit: Lit::Bool(_), ..
                        })) => quote_spanned!(span=> ::cachier::NearCache::default()),
                        Some(Expr::Lit(ExprLit {
                            lit: Lit::Int(entries),
                            ..
                        })) => quote_spanned!(span=> ::cachier::NearCache::entries(#entries)),
                        Some(other) => quote!(#other),
                    };
                    args.builder.push(quote_spanned!(span=> .near_cache(#near)));
                    Ok(())
                }
                "entry_size_limit" => required(&param).and_then(size).map(|value| {
                    args.builder.push(quote_spanned!(span=> .entry_size_limit(#value)));
                }),
                "version" if param.value.as_ref().and_then(lit_str).as_deref() == Some("auto") => {
                    args.auto_version = true;
                    Ok(())
                }
                "backend" | "shared_backend" | "cache_dir" | "version" => {
                    required(&param).map(|value| {
                        args.builder.push(quote_spanned!(span=> .#ident(#value)));
                    })
                }
                _ => unreachable!("every name in PARAMS is handled"),
            };
            if let Err(error) = result {
                errors.push(error);
            }
        }
        errors.finish().map(|()| args)
    }
}

#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }
    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

fn required(param: &Raw) -> syn::Result<&Expr> {
    param.value.as_ref().ok_or_else(|| {
        syn::Error::new_spanned(
            &param.name,
            format!("`{}` needs a value: `{} = ...`", param.name, param.name),
        )
    })
}

fn lit_str(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => Some(text.value()),
        _ => None,
    }
}

/// `"1h"` is parsed now (an error points at it); any other expression must be a `Duration`.
fn duration(param: &str, value: &Expr) -> syn::Result<TokenStream> {
    let span = value.span();
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => {
            let parsed = cachier_settings::parse_duration(&text.value())
                .map_err(|message| syn::Error::new(span, format!("`{param}`: {message}")))?;
            if param == "lease" && parsed.is_zero() {
                return Err(syn::Error::new(span, "`lease` must be longer than zero"));
            }
            let nanos = u64::try_from(parsed.as_nanos()).map_err(|_| {
                syn::Error::new(span, format!("`{param}`: {:?} is too long", text.value()))
            })?;
            Ok(quote_spanned!(span=> ::core::time::Duration::from_nanos(#nanos)))
        }
        Expr::Lit(ExprLit {
            lit: Lit::Int(_) | Lit::Float(_),
            ..
        }) => Err(syn::Error::new(
            span,
            format!("`{param}` takes a duration with a unit, such as \"30s\", \"5m\" or \"1h\" (or a `std::time::Duration` expression)"),
        )),
        other => Ok(quote!(#other)),
    }
}

/// `"10MB"` is parsed now; an integer is a byte count; any other expression is passed on.
fn size(value: &Expr) -> syn::Result<TokenStream> {
    let span = value.span();
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => {
            let bytes = cachier_settings::parse_bytes(&text.value()).map_err(|message| {
                syn::Error::new(span, format!("`entry_size_limit`: {message}"))
            })?;
            Ok(quote_spanned!(span=> #bytes))
        }
        Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        }) => {
            let bytes: u64 = n.base10_parse()?;
            Ok(quote_spanned!(span=> #bytes))
        }
        other => Ok(quote!(#other)),
    }
}

#[cfg(test)]
mod tests {
    use super::Args;
    use quote::quote;

    fn builder(tokens: proc_macro2::TokenStream) -> String {
        let args = Args::parse(tokens).expect("valid");
        args.builder
            .iter()
            .map(|call| call.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn error(tokens: proc_macro2::TokenStream) -> String {
        match Args::parse(tokens) {
            Ok(_) => panic!("accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn durations_and_sizes_are_parsed_at_compile_time() {
        let calls = builder(quote!(
            stale_after = "1h30m",
            entry_size_limit = "10MB",
            lease = "500ms"
        ));
        assert!(calls.contains("from_nanos (5400000000000u64)"), "{calls}");
        assert!(calls.contains("entry_size_limit (10485760u64)"), "{calls}");
        assert!(calls.contains("from_nanos (500000000u64)"), "{calls}");
        let calls = builder(quote!(entry_size_limit = 4096, stale_after = my_duration()));
        assert!(calls.contains("entry_size_limit (4096u64)"), "{calls}");
        assert!(calls.contains("stale_after (my_duration ())"), "{calls}");
    }

    #[test]
    fn flags_and_values() {
        let calls = builder(quote!(
            next_time,
            allow_none = false,
            cleanup_stale = on(),
            preview_args = false
        ));
        assert!(calls.contains("preview_args (false)"), "{calls}");
        assert!(calls.contains("next_time (true)"), "{calls}");
        assert!(calls.contains("allow_none (false)"), "{calls}");
        assert!(calls.contains("cleanup_stale (on ())"), "{calls}");
        let args = Args::parse(quote!(
            allow_non_static_methods,
            name = "x",
            key = |a: &(u8,)| a.0
        ))
        .unwrap();
        assert!(args.allow_non_static_methods);
        assert!(args.name.is_some() && args.key.is_some());
        assert!(args.builder.is_empty());
    }

    #[test]
    fn version_auto_is_left_to_the_function() {
        let args = Args::parse(quote!(version = "auto")).unwrap();
        assert!(args.auto_version);
        assert!(
            args.builder.is_empty(),
            "the version is added once the body is known"
        );
        let args = Args::parse(quote!(version = "3")).unwrap();
        assert!(!args.auto_version);
        assert_eq!(args.builder[0].to_string(), ". version (\"3\")");
    }

    #[test]
    fn misuse_is_refused_with_a_reason() {
        assert!(error(quote!(lease = "0s")).contains("longer than zero"));
        assert!(error(quote!(stale_after)).contains("needs a value"));
        assert!(error(quote!(name = "  ")).contains("must not be empty"));
        assert!(error(quote!(mongetter = f)).contains("use `backend"));
        assert!(error(quote!(allow_non_static_methods = flag())).contains("compile time"));
        assert!(error(quote!(backend = a(), shared_backend = b())).contains("not both"));
        assert!(
            error(quote!(shared_backend = b(), separate_files)).contains("default file backend")
        );
        assert!(error(quote!(stale_after = "99999999999w")).contains("too long"));
    }
}
