//! The browser pages: the authorization endpoint's sign-in and consent, the device verification
//! pages (RFC 8628) and RP-initiated logout, each in its own module, with what several of them
//! share in [`common`] and the handling of a posted username and password in [`signin`].
//!
//! Every form follows the pinned page contract (interface.md §2): one `<form method="post">`,
//! visible inputs named by the interface (`user_code`, `username`, `password`, `approve`),
//! everything else hidden (a CSRF MAC bound to what the form is about and to the browser's
//! pre-session cookie, the step). Posts are also refused when the browser says they come from
//! another site.

pub(crate) mod authorize;
pub(crate) mod common;
pub(crate) mod device;
pub(crate) mod logout;
pub(crate) mod signin;
