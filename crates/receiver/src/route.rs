//! Which route a request path names. Paths are matched exactly, segment by
//! segment: no percent-decoding, no trailing slash, no dot segments, so one
//! path has one meaning and a log label is never attacker text.

use http::Method;
use paysettle_core::{Account, Provider};

/// A matched path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/callbacks/{provider}` (the default account) or
    /// `/callbacks/{provider}/{account}`.
    Callback {
        provider: Provider,
        /// `None` when the segment is not a well-formed account name; such an
        /// account cannot be configured, so it is answered 404.
        account: Option<Account>,
        /// Whether the account came from the path (for the route label).
        named: bool,
    },
    Healthz,
    Readyz,
}

impl Route {
    /// Matches a path, or `None` for 404.
    pub(crate) fn parse(path: &str) -> Option<Route> {
        match path {
            "/healthz" => return Some(Route::Healthz),
            "/readyz" => return Some(Route::Readyz),
            _ => {}
        }
        let rest = path.strip_prefix("/callbacks/")?;
        let (provider, account) = match rest.split_once('/') {
            None => (rest, None),
            Some((provider, account)) => (provider, Some(account)),
        };
        let provider: Provider = provider.parse().ok()?;
        Some(match account {
            None => Route::Callback {
                provider,
                account: Some(Account::default_account()),
                named: false,
            },
            Some(segment) => Route::Callback {
                provider,
                account: Account::parse(segment).ok(),
                named: true,
            },
        })
    }

    /// The route template: the metric label and log field.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Route::Callback {
                provider, named, ..
            } => match (provider, named) {
                (Provider::Paysys, false) => "/callbacks/paysys",
                (Provider::Paysys, true) => "/callbacks/paysys/{account}",
                (Provider::Plutu, false) => "/callbacks/plutu",
                (Provider::Plutu, true) => "/callbacks/plutu/{account}",
                (Provider::Portmanat, false) => "/callbacks/portmanat",
                (Provider::Portmanat, true) => "/callbacks/portmanat/{account}",
            },
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
        }
    }

    /// The methods the route answers, in `Allow` order.
    pub(crate) fn allowed(&self) -> &'static [Method] {
        const POST: &[Method] = &[Method::POST];
        const GET_POST: &[Method] = &[Method::GET, Method::POST];
        const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];
        match self {
            Route::Callback {
                provider: Provider::Paysys,
                ..
            } => POST,
            Route::Callback { .. } => GET_POST,
            Route::Healthz | Route::Readyz => GET_HEAD,
        }
    }
}

/// The label of a path no route matches.
pub(crate) const UNMATCHED: &str = "unmatched";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_routes_with_and_without_an_account() {
        assert_eq!(
            Route::parse("/callbacks/paysys"),
            Some(Route::Callback {
                provider: Provider::Paysys,
                account: Some(Account::default()),
                named: false
            })
        );
        let Some(Route::Callback {
            provider, account, ..
        }) = Route::parse("/callbacks/plutu/shop-2")
        else {
            panic!()
        };
        assert_eq!(provider, Provider::Plutu);
        assert_eq!(account.unwrap().as_str(), "shop-2");
        assert_eq!(
            Route::parse("/callbacks/portmanat/Shop%2F2"),
            Some(Route::Callback {
                provider: Provider::Portmanat,
                account: None,
                named: true
            }),
            "an impossible account name is a route to nothing"
        );
    }

    #[test]
    fn everything_else_is_unmatched() {
        for path in [
            "/",
            "/callbacks",
            "/callbacks/",
            "/callbacks/paypal",
            "/callbacks/PaySys",
            "/callbacks/paysys/a/b",
            "/healthz/",
            "//callbacks/paysys",
        ] {
            let route = Route::parse(path);
            let is_callback_to_nothing =
                matches!(route, Some(Route::Callback { account: None, .. }));
            assert!(
                route.is_none() || is_callback_to_nothing,
                "{path}: {route:?}"
            );
        }
        // Served on a listener of its own (`scrape`), never on the callback
        // port.
        assert_eq!(Route::parse("/metrics"), None);
    }

    #[test]
    fn allowed_methods_per_route() {
        assert_eq!(
            Route::parse("/callbacks/paysys").unwrap().allowed(),
            &[Method::POST]
        );
        assert_eq!(
            Route::parse("/callbacks/portmanat").unwrap().allowed(),
            &[Method::GET, Method::POST]
        );
        assert_eq!(
            Route::parse("/healthz").unwrap().allowed(),
            &[Method::GET, Method::HEAD]
        );
    }
}
