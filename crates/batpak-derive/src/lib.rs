//! Derive macros for [batpak](https://docs.rs/batpak). Use them through the
//! `batpak` crate (`use batpak::EventPayload;`), which re-exports them.
//!
//! `#[derive(EventPayload)]` binds a type to its event kind and schema version:
//!
//! ```ignore
//! #[derive(serde::Serialize, serde::Deserialize, batpak::EventPayload)]
//! #[batpak(category = 0xF, type_id = 1, version = 2, upcast = upgrade_moved)]
//! struct Moved { x: i64, y: i64 }
//! ```
//!
//! - `category` (required): `0x1..=0xF`, except `0xD`; categories `0x0` and
//!   `0xD` are reserved for the store and rejected at compile time.
//! - `type_id` (required): `0x000..=0xFFF`.
//! - `version` (optional, default 0): the schema version new events are written with.
//! - `upcast` (optional): a path to `fn(u16, Value) -> Result<Value, UpcastError>`
//!   that turns a payload written at version `v` into version `v + 1`.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::spanned::Spanned;
use syn::{parse_macro_input, DeriveInput, Expr, ExprLit, Lit, LitInt, Path};

/// Implements `batpak::EventPayload` for a type. See the crate docs for the
/// `#[batpak(...)]` attributes.
#[proc_macro_derive(EventPayload, attributes(batpak))]
pub fn derive_event_payload(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// The parsed `#[batpak(...)]` attributes.
struct Attributes {
    category: Option<(u8, Span)>,
    type_id: Option<(u16, Span)>,
    version: u16,
    upcast: Option<Path>,
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let attributes = parse_attributes(input)?;
    let (category, category_span) = attributes.category.ok_or_else(|| {
        syn::Error::new(
            input.ident.span(),
            "missing `#[batpak(category = ..., type_id = ...)]` on an EventPayload type",
        )
    })?;
    let (type_id, _) = attributes.type_id.ok_or_else(|| {
        syn::Error::new(
            input.ident.span(),
            "missing `type_id` in `#[batpak(...)]` on an EventPayload type",
        )
    })?;
    if category == 0x0 || category == 0xD {
        return Err(syn::Error::new(
            category_span,
            format!(
                "event kind category {category:#x} is reserved for the store (0x0 and 0xD); use 0x1..=0xF except 0xD"
            ),
        ));
    }

    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let version = attributes.version;
    let upcast = attributes.upcast.map(|path| {
        quote! {
            fn upcast(
                from_version: u16,
                payload: ::batpak::typed::Value,
            ) -> ::core::result::Result<::batpak::typed::Value, ::batpak::typed::UpcastError> {
                #path(from_version, payload)
            }
        }
    });
    Ok(quote! {
        impl #impl_generics ::batpak::typed::EventPayload for #name #type_generics #where_clause {
            const KIND: ::batpak::EventKind = ::batpak::EventKind::custom(#category, #type_id);
            const SCHEMA_VERSION: u16 = #version;
            #upcast
        }
    })
}

fn parse_attributes(input: &DeriveInput) -> syn::Result<Attributes> {
    let mut attributes = Attributes {
        category: None,
        type_id: None,
        version: 0,
        upcast: None,
    };
    for attribute in input.attrs.iter().filter(|a| a.path().is_ident("batpak")) {
        attribute.parse_nested_meta(|meta| {
            if meta.path.is_ident("category") {
                let literal = int_literal(&meta.value()?.parse::<Expr>()?)?;
                let value = literal.base10_parse::<u64>()?;
                if value > 0xF {
                    return Err(syn::Error::new(
                        literal.span(),
                        format!("event kind category {value:#x} does not fit in 4 bits (0x0..=0xF)"),
                    ));
                }
                attributes.category = Some((value as u8, literal.span()));
            } else if meta.path.is_ident("type_id") {
                let literal = int_literal(&meta.value()?.parse::<Expr>()?)?;
                let value = literal.base10_parse::<u64>()?;
                if value > 0xFFF {
                    return Err(syn::Error::new(
                        literal.span(),
                        format!("event kind type id {value:#x} does not fit in 12 bits (0x000..=0xFFF)"),
                    ));
                }
                attributes.type_id = Some((value as u16, literal.span()));
            } else if meta.path.is_ident("version") {
                let literal = int_literal(&meta.value()?.parse::<Expr>()?)?;
                attributes.version = literal.base10_parse::<u16>().map_err(|_| {
                    syn::Error::new(literal.span(), "schema version must fit in a u16 (0..=65535)")
                })?;
            } else if meta.path.is_ident("upcast") {
                attributes.upcast = Some(meta.value()?.parse::<Path>()?);
            } else {
                return Err(meta.error(
                    "unknown batpak attribute; expected `category`, `type_id`, `version` or `upcast`",
                ));
            }
            Ok(())
        })?;
    }
    Ok(attributes)
}

fn int_literal(expr: &Expr) -> syn::Result<LitInt> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(literal),
            ..
        }) => Ok(literal.clone()),
        other => Err(syn::Error::new(other.span(), "expected an integer literal")),
    }
}
