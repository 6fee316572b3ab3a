//! Code generation: one `#[cachier]` function becomes the function itself (same signature),
//! its `<name>_cache()` accessor, a hidden body function, and for `&self` methods
//! `<name>_call_with`, `<name>_precache` and `<name>_invalidate`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Attribute, Block, FnArg, Ident, ImplItem, ItemImpl, Pat, PatIdent, ReturnType, Signature, Type,
    TypeReference, Visibility,
};

use crate::args::Args;

/// A function as written: free, associated, or a method.
pub(crate) struct Func {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub block: Box<Block>,
}

impl ToTokens for Func {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let Func {
            attrs,
            vis,
            sig,
            block,
        } = self;
        tokens.extend(quote!(#(#attrs)* #vis #sig #block));
    }
}

/// The receiver of a method, once accepted.
struct Method;

/// Expands `#[cachier(args)]` on `func`. `in_impl` is true inside a `#[cachier] impl` block
/// (and for every `&self` method): sibling items are then reached through `Self::`.
pub(crate) fn expand_fn(args: Args, func: Func, in_impl: bool) -> syn::Result<TokenStream> {
    let sig = &func.sig;
    let mut errors = Vec::new();
    check_signature(sig, &mut errors);
    let method = match receiver(sig, &args) {
        Ok(method) => method,
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let in_impl = in_impl || method.is_some();

    let mut inputs = Vec::new(); // (outer pattern ident, type)
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(typed) = input else { continue };
        if let Some((node, what)) = borrowed(&typed.ty) {
            errors.push(syn::Error::new_spanned(
                &node,
                format!(
                    "#[cachier] arguments must be owned, `'static` and `Serialize` values (they are moved into the cached call, form its key and may outlive it in a background refresh); this one has {what}: take `String` instead of `&str`, `Vec<T>` instead of `&[T]` and so on, and pick what matters for the key with `key = ...`"
                ),
            ));
        }
        if args.key.is_none() {
            if let Some(set) = unordered_set(&typed.ty) {
                errors.push(syn::Error::new_spanned(
                    &set,
                    "a `HashSet` argument has no fixed order, so its key would differ in every process and never hit in another: take a `BTreeSet` (or a sorted `Vec`), or pick the key with `key = ...`",
                ));
            }
        }
        let ident = match &*typed.pat {
            Pat::Ident(PatIdent {
                ident,
                by_ref: None,
                subpat: None,
                ..
            }) => ident.clone(),
            _ => format_ident!("__cachier_arg{}", i),
        };
        inputs.push((ident, (*typed.ty).clone()));
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Some((node, what)) = borrowed(ty) {
            errors.push(syn::Error::new_spanned(
                &node,
                format!("the value of a #[cachier] function must be an owned, `'static` value (it is stored and served again); this one has {what}"),
            ));
        }
    }
    if inputs.is_empty() {
        if let Some(key) = &args.key {
            errors.push(syn::Error::new_spanned(
                key,
                "`key` on a function without arguments: every call has the same key already; remove `key`",
            ));
        }
    }
    let mut errors = errors.into_iter();
    if let Some(mut first) = errors.next() {
        for error in errors {
            first.combine(error);
        }
        return Err(first);
    }

    let name = &sig.ident;
    let name_text = name.unraw().to_string();
    let cache_fn = format_ident!("{}_cache", name.unraw());
    let body_fn = format_ident!("{}_uncached", name.unraw());
    let vis = &func.vis;
    let is_async = sig.asyncness.is_some();
    let span = sig.ident.span();

    let names: Vec<&Ident> = inputs.iter().map(|(ident, _)| ident).collect();
    let types: Vec<&Type> = inputs.iter().map(|(_, ty)| ty).collect();
    let vars: Vec<Ident> = (0..inputs.len())
        .map(|i| format_ident!("__cachier_a{}", i))
        .collect();
    let tuple = quote!((#(#types,)*));
    let value = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let fallible = returns_result(&sig.output);
    // The stored type is named in the call, so that a type that cannot be stored is reported
    // at the return type, with what to derive.
    let stored = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) if fallible => ok_type(ty).map_or(quote!(_), |ok| quote!(#ok)),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let memoize = match (is_async, fallible) {
        (false, false) => quote!(::cachier::__private::memoize::<_, #stored, _>),
        (false, true) => quote!(::cachier::__private::memoize_fallible::<_, #stored, _, _>),
        (true, false) => quote!(::cachier::__private::memoize_async::<_, #stored, _, _>),
        (true, true) => quote!(::cachier::__private::memoize_async_fallible::<_, #stored, _, _, _>),
    };
    let handle = if is_async {
        quote!(::cachier::AsyncMemoized)
    } else {
        quote!(::cachier::Memoized)
    };
    let dot_await = if is_async { quote!(.await) } else { quote!() };
    let q = if in_impl { quote!(Self::) } else { quote!() };
    let receiver = quote!(::cachier::__private::Receiver<Self>);
    let memo_args = if method.is_some() {
        quote!((#receiver, #tuple))
    } else {
        tuple.clone()
    };

    // The namespace: `module::name`, or `module::Type::name` in an impl.
    let (derived, namespace) = match &args.name {
        Some(name) => (false, quote!(#name)),
        None if in_impl => (
            true,
            quote!(::cachier::__private::method_namespace::<Self>(::core::module_path!(), #name_text)),
        ),
        None => (
            true,
            quote!(::core::concat!(::core::module_path!(), "::", #name_text)),
        ),
    };

    let func_closure = match (method.is_some(), is_async) {
        (false, _) => quote!(|(#(#vars,)*): #tuple| #q #body_fn(#(#vars),*)),
        (true, false) => quote!(
            |(__cachier_self, (#(#vars,)*)): (#receiver, #tuple)| {
                Self::#body_fn(&__cachier_self.0, #(#vars),*)
            }
        ),
        (true, true) => quote!(
            |(__cachier_self, (#(#vars,)*)): (#receiver, #tuple)| async move {
                Self::#body_fn(&__cachier_self.0, #(#vars),*).await
            }
        ),
    };
    let key = args.key.as_ref().map(|key| {
        if method.is_some() {
            quote_spanned!(key.span()=> .key({
                let __cachier_key = ::cachier::__private::key_fn::<#tuple, _, _>(#key);
                move |__cachier_args: &(#receiver, #tuple)| __cachier_key(&__cachier_args.1)
            }))
        } else {
            quote_spanned!(key.span()=> .key(#key))
        }
    });
    let auto_version = args.auto_version.then(|| {
        let version = crate::version::auto(&func.sig, &func.block);
        quote!(.version(#version))
    });
    let builder = &args.builder;

    // Attributes: docs and the rest stay on the function; `cfg` goes everywhere; lint levels go
    // to the body too (where the user's code now is).
    let cfgs: Vec<&Attribute> = func
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .collect();
    let lints: Vec<&Attribute> = func
        .attrs
        .iter()
        .filter(|a| {
            ["allow", "warn", "deny", "forbid", "expect"]
                .iter()
                .any(|l| a.path().is_ident(l))
        })
        .collect();
    let outer_attrs: Vec<&Attribute> = func
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("expect"))
        .collect();

    let link = if in_impl {
        format!("Self::{name_text}")
    } else {
        name_text.clone()
    };
    let cache_doc = format!(
        "The cache of [`{name_text}`]({link}) (memoized by `#[cachier]`): `invalidate`, `clear_cache`, `clear_being_calculated`, `cache_dpath`, `precache_value`, `call_with`, `namespace`...\n\nBuilt on first use. An error if the cache could not be built (for example an unwritable cache directory): the function then runs uncached."
    );

    // The function, same signature: arguments are renamed only when their pattern is not a
    // plain name, and lose `mut` (not part of the signature).
    let mut outer_sig = sig.clone();
    let mut idents = names.iter();
    for input in outer_sig.inputs.iter_mut() {
        if let FnArg::Typed(typed) = input {
            let ident = idents.next().expect("one name per typed argument");
            *typed.pat = Pat::Ident(PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: (*ident).clone(),
                subpat: None,
            });
        }
    }
    let call_args = if method.is_some() {
        quote!((::cachier::__private::Receiver(::core::clone::Clone::clone(self)), (#(#names,)*)))
    } else {
        quote!((#(#names,)*))
    };
    let uncached = if method.is_some() {
        quote!(Self::#body_fn(self, #(#names),*))
    } else {
        quote_spanned!(span=> #q #body_fn(#(#names),*))
    };
    let cache_call = quote_spanned!(span=> #q #cache_fn());
    let outer = quote! {
        #(#outer_attrs)*
        #[allow(clippy::clone_on_copy)]
        #vis #outer_sig {
            match #cache_call {
                ::core::result::Result::Ok(__cachier_memo) => __cachier_memo.call(#call_args) #dot_await,
                ::core::result::Result::Err(_) => #uncached #dot_await,
            }
        }
    };

    let accessor = quote! {
        #[doc = #cache_doc]
        #(#cfgs)*
        #[allow(dead_code, clippy::type_complexity)]
        #vis fn #cache_fn() -> ::core::result::Result<&'static #handle<#memo_args, #value>, ::cachier::Error> {
            static __CACHIER_SLOT: ::cachier::__private::Slot = ::cachier::__private::Slot::new();
            __CACHIER_SLOT.get(
                #derived,
                || #namespace,
                |__cachier_name| #memoize(__cachier_name, #func_closure)
                    #(#builder)*
                    #auto_version
                    #key
                    .build(),
            )
        }
    };

    let mut body_sig = sig.clone();
    body_sig.ident = body_fn.clone();
    let block = &func.block;
    let uncached_doc = format!(
        "[`{name_text}`]({link}) without the cache: the function as written (cachier's `__wrapped__`)."
    );
    let body = quote! {
        #[doc = #uncached_doc]
        #(#cfgs)*
        #(#lints)*
        #[allow(dead_code, clippy::too_many_arguments)]
        #vis #body_sig #block
    };

    let extras = method.map(|Method| {
        let call_with_fn = format_ident!("{}_call_with", name.unraw());
        let precache_fn = format_ident!("{}_precache", name.unraw());
        let invalidate_fn = format_ident!("{}_invalidate", name.unraw());
        let (async_kw, dot_await) = if is_async {
            (quote!(async), quote!(.await))
        } else {
            (quote!(), quote!())
        };
        let call_with_doc = format!(
            "[`Self::{name_text}`] with per-call options (`skip_cache`, `overwrite_cache`, `max_age`...); `args` is the argument tuple."
        );
        let precache_doc = format!(
            "Stores `value` as the result of [`Self::{name_text}`] for `args` (the argument tuple) and returns it."
        );
        let invalidate_doc = format!(
            "Deletes the cached result of [`Self::{name_text}`] for `args` (the argument tuple); returns whether there was one."
        );
        quote! {
            #[doc = #call_with_doc]
            #(#cfgs)*
            #[allow(dead_code, clippy::clone_on_copy)]
            #vis #async_kw fn #call_with_fn(&self, args: #tuple, options: &::cachier::CallOptions) -> #value {
                match Self::#cache_fn() {
                    ::core::result::Result::Ok(__cachier_memo) => {
                        __cachier_memo.call_with((::cachier::__private::Receiver(::core::clone::Clone::clone(self)), args), options) #dot_await
                    }
                    ::core::result::Result::Err(_) => {
                        let (#(#vars,)*) = args;
                        Self::#body_fn(self, #(#vars),*) #dot_await
                    }
                }
            }

            #[doc = #precache_doc]
            #(#cfgs)*
            #[allow(dead_code, clippy::clone_on_copy)]
            #vis #async_kw fn #precache_fn(&self, args: #tuple, value: #value) -> ::core::result::Result<#value, ::cachier::Error> {
                Self::#cache_fn()?.precache_value(&(::cachier::__private::Receiver(::core::clone::Clone::clone(self)), args), value) #dot_await
            }

            #[doc = #invalidate_doc]
            #(#cfgs)*
            #[allow(dead_code, clippy::clone_on_copy)]
            #vis #async_kw fn #invalidate_fn(&self, args: #tuple) -> ::core::result::Result<bool, ::cachier::Error> {
                Self::#cache_fn()?.invalidate(&(::cachier::__private::Receiver(::core::clone::Clone::clone(self)), args)) #dot_await
            }
        }
    });

    Ok(quote! {
        #outer
        #accessor
        #body
        #extras
    })
}

/// Rejects what cannot be memoized: generic, const, unsafe, extern and variadic functions.
fn check_signature(sig: &Signature, errors: &mut Vec<syn::Error>) {
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "#[cachier] does not support generic functions (or lifetime parameters): a memoized function has one cache with fixed argument and value types; write one non-generic function per type (each can call a shared generic helper)",
        ));
    }
    if let Some(token) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            token,
            "#[cachier] cannot memoize a `const fn`: the cache is read at run time",
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            token,
            "#[cachier] does not support `unsafe fn`: memoize a safe wrapper instead",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "#[cachier] does not support `extern` functions: memoize a Rust wrapper instead",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "#[cachier] does not support variadic functions",
        ));
    }
}

/// Accepts `&self` (with `allow_non_static_methods`); rejects other receivers.
fn receiver(sig: &Signature, args: &Args) -> syn::Result<Option<Method>> {
    let Some(receiver) = sig.receiver() else {
        return Ok(None);
    };
    let by_shared_ref = match (&receiver.reference, &receiver.mutability) {
        (Some(_), None) => true,
        (Some(_), Some(_)) => {
            return Err(syn::Error::new_spanned(
                receiver,
                "#[cachier] cannot memoize a `&mut self` method: a cache hit skips the body, so its changes to `self` would happen only on a miss; take `&self`, or memoize a function that computes the value and apply it to `self` yourself",
            ))
        }
        // `self: &Self`
        (None, _) => matches!(
            &*receiver.ty,
            Type::Reference(TypeReference { mutability: None, elem, .. })
                if matches!(&**elem, Type::Path(p) if p.path.is_ident("Self"))
        ),
    };
    if !by_shared_ref {
        return Err(syn::Error::new_spanned(
            receiver,
            "#[cachier] methods must take `&self` (not `self`, `&mut self`, `Box<Self>`...): take `&self` and add `allow_non_static_methods`",
        ));
    }
    if !args.allow_non_static_methods {
        return Err(syn::Error::new_spanned(
            receiver,
            format!(
                "#[cachier] cannot memoize the method `{}` as it is: `self` is not part of the cache key, so all instances would share a single cache.\n  If sharing one cache across instances is intended, write `#[cachier(allow_non_static_methods)]` (`Self` must then be `Clone + Send + Sync + 'static`: each call gets a clone of `self`).\n  Otherwise make it an associated function taking what matters as arguments.",
                sig.ident
            ),
        ));
    }
    Ok(Some(Method))
}

/// `Result<..>` (any path ending in `Result`: `std::io::Result<T>` too) uses the fallible
/// memoizer: errors are returned, never cached.
fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

/// `T` of a `Result<T, ..>` return type, when written.
fn ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let syn::PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(ok) => Some(ok),
        _ => None,
    }
}

/// The first `HashSet` (or `FxHashSet`, `AHashSet`...) named in a type: sets encode as
/// sequences, in their iteration order, so their keys are not canonical.
fn unordered_set(ty: &Type) -> Option<TokenStream> {
    #[derive(Default)]
    struct Finder(Option<TokenStream>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_path_segment(&mut self, segment: &'ast syn::PathSegment) {
            if self.0.is_none() && segment.ident.to_string().ends_with("HashSet") {
                self.0 = Some(segment.to_token_stream());
            }
            syn::visit::visit_path_segment(self, segment);
        }
    }
    let mut finder = Finder::default();
    finder.visit_type(ty);
    finder.0
}

/// The first borrowed or unnameable part of a type: a non-`'static` reference or lifetime,
/// `impl Trait` or `_`.
fn borrowed(ty: &Type) -> Option<(TokenStream, &'static str)> {
    #[derive(Default)]
    struct Finder(Option<(TokenStream, &'static str)>);
    impl Finder {
        fn found(&mut self, node: &dyn ToTokens, what: &'static str) {
            if self.0.is_none() {
                self.0 = Some((node.to_token_stream(), what));
            }
        }
    }
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_reference(&mut self, r: &'ast TypeReference) {
            if r.lifetime.as_ref().is_none_or(|l| l.ident != "static") {
                self.found(r, "a reference");
            }
            syn::visit::visit_type_reference(self, r);
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if lifetime.ident != "static" {
                self.found(lifetime, "a lifetime");
            }
        }
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.found(t, "`impl Trait`");
        }
        fn visit_type_infer(&mut self, t: &'ast syn::TypeInfer) {
            self.found(t, "`_`");
        }
    }
    let mut finder = Finder::default();
    finder.visit_type(ty);
    finder.0
}

/// `#[cachier] impl Type { ... }`: expands the `#[cachier(...)]` functions inside, knowing that
/// they are associated functions (so that functions without `self` work too).
pub(crate) fn expand_impl(mut item: ItemImpl) -> syn::Result<TokenStream> {
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "#[cachier] does not support generic impl blocks: a memoized function has one cache with fixed types; memoize in a non-generic impl",
        ));
    }
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new_spanned(
            path,
            "#[cachier] cannot add its management functions to a trait impl: memoize an inherent method (in `impl Type`) and call it from the trait method",
        ));
    }
    let mut errors: Option<syn::Error> = None;
    let mut items = Vec::with_capacity(item.items.len());
    for impl_item in std::mem::take(&mut item.items) {
        let ImplItem::Fn(mut f) = impl_item else {
            items.push(impl_item);
            continue;
        };
        let Some(index) = f.attrs.iter().position(is_cachier_attr) else {
            items.push(ImplItem::Fn(f));
            continue;
        };
        let attr = f.attrs.remove(index);
        let expanded = attr_args(&attr).and_then(|tokens| {
            let args = Args::parse(tokens)?;
            if let Some(default) = &f.defaultness {
                return Err(syn::Error::new_spanned(
                    default,
                    "#[cachier] does not support `default fn`",
                ));
            }
            let func = Func {
                attrs: f.attrs.clone(),
                vis: f.vis.clone(),
                sig: f.sig.clone(),
                block: Box::new(f.block.clone()),
            };
            expand_fn(args, func, true)
        });
        match expanded {
            Ok(tokens) => items.push(ImplItem::Verbatim(tokens)),
            Err(error) => {
                match &mut errors {
                    Some(all) => all.combine(error),
                    None => errors = Some(error),
                }
                items.push(ImplItem::Fn(f));
            }
        }
    }
    item.items = items;
    match errors {
        Some(error) => {
            let error = error.to_compile_error();
            Ok(quote!(#error #item))
        }
        None => Ok(item.into_token_stream()),
    }
}

/// `#[cachier]`, `#[cachier::cachier(...)]`...
fn is_cachier_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "cachier")
}

fn attr_args(attr: &Attribute) -> syn::Result<TokenStream> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(TokenStream::new()),
        syn::Meta::List(list) => Ok(list.tokens.clone()),
        syn::Meta::NameValue(nv) => Err(syn::Error::new_spanned(
            nv,
            "write `#[cachier]` or `#[cachier(param = value, ...)]`",
        )),
    }
}
