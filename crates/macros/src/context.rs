//! Where a `#[cachier]` function is written. An attribute macro sees only its own item, so an
//! associated function in an `impl` block without `#[cachier]` looks like a free function,
//! and its expansion would name its siblings without `Self::`. The source file tells the two
//! apart, so that the macro can say what to do instead of leaving rustc's unresolved names.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::SystemTime;

use quote::ToTokens;
use syn::visit::Visit;

/// The `#[cachier]` functions of one source file.
#[derive(Default)]
struct Scan {
    /// Associated functions (no `self`) in `impl` blocks without `#[cachier]`, with the type
    /// of their block.
    in_plain_impls: HashMap<String, String>,
    /// Every other `#[cachier]` function.
    elsewhere: HashSet<String>,
}

/// A file's scan, with the modification time it was made at.
type Scanned = (Option<SystemTime>, Rc<Scan>);

thread_local! {
    /// Scans by file, valid while the file's modification time stays the same.
    static SCANS: RefCell<HashMap<PathBuf, Scanned>> = RefCell::default();
}

/// The type of the `impl` block without `#[cachier]` that holds the `#[cachier]` associated
/// function `name` being expanded, if the source file shows one (and no other `#[cachier]`
/// function of that name that the expansion could be).
pub(crate) fn plain_impl_of(name: &str) -> Option<String> {
    let path = proc_macro::Span::call_site().local_file()?;
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let scan = SCANS.with(|scans| {
        let mut scans = scans.borrow_mut();
        match scans.get(&path) {
            Some((time, scan)) if *time == modified => Some(scan.clone()),
            _ => {
                let scan = Rc::new(scan(&std::fs::read_to_string(&path).ok()?)?);
                scans.insert(path, (modified, scan.clone()));
                Some(scan)
            }
        }
    })?;
    if scan.elsewhere.contains(name) {
        return None;
    }
    scan.in_plain_impls.get(name).cloned()
}

fn scan(source: &str) -> Option<Scan> {
    let file = syn::parse_file(source).ok()?;
    let mut scan = Scan::default();
    scan.visit_file(&file);
    Some(scan)
}

fn has_cachier(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path()
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "cachier")
    })
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        let plain = !has_cachier(&item.attrs);
        for impl_item in &item.items {
            if let syn::ImplItem::Fn(f) = impl_item {
                if has_cachier(&f.attrs) {
                    let name = f.sig.ident.to_string();
                    if plain && f.sig.receiver().is_none() {
                        let ty = item.self_ty.to_token_stream().to_string();
                        self.in_plain_impls.insert(name, ty);
                    } else {
                        self.elsewhere.insert(name);
                    }
                }
            }
        }
        syn::visit::visit_item_impl(self, item);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if has_cachier(&f.attrs) {
            self.elsewhere.insert(f.sig.ident.to_string());
        }
        syn::visit::visit_item_fn(self, f);
    }
}
