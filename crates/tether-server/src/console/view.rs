//! The console's pages as askama templates (`templates/console/`), and how every console page
//! is answered: `no-store`, a CSP that allows the console's own stylesheet and script and
//! nothing inline, no framing, no referrer.

use askama::Template;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use tether_core::model::{BindingType, GrantType};
use tether_core::provider::Provider;

use crate::error::no_store;

/// The navigation bar and the signed-in operator, on every page.
pub(crate) struct Nav {
    pub username: String,
    pub can_write: bool,
    pub csrf: String,
    pub active: &'static str,
    pub role: &'static str,
}

impl Nav {
    pub fn is(&self, section: &str) -> bool {
        self.active == section
    }
}

pub(crate) fn render(p: &Provider, status: StatusCode, html: Result<String, askama::Error>) -> Response {
    let h = match html {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "console page could not be rendered");
            return (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response();
        }
    };
    let mut r = (status, Html(h)).into_response();
    let hd = r.headers_mut();
    no_store(hd);
    hd.insert("x-frame-options", HeaderValue::from_static("DENY"));
    hd.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // A form post may end at the authorization endpoint (a new sign-in), on the issuer's origin.
    let issuer = url::Url::parse(p.issuer()).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self' {issuer}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        hd.insert("content-security-policy", v);
    }
    r
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage<'a> {
    title: &'a str,
    text: &'a str,
    signin: bool,
}

/// A page with a title and a sentence, outside the signed-in layout.
pub(crate) fn message(p: &Provider, status: StatusCode, title: &str, text: &str) -> Response {
    render(p, status, MessagePage { title, text, signin: false }.render())
}

/// A signed-in user without the `admin` or `viewer` role: no data at all.
pub(crate) fn no_access(p: &Provider) -> Response {
    let text = "You signed in, but you have no access to the console: it needs the admin or viewer role. Ask an administrator (tether user update NAME --role viewer).";
    render(p, StatusCode::FORBIDDEN, MessagePage { title: "No access", text, signin: false }.render())
}

pub(crate) fn signed_out(p: &Provider) -> Response {
    let text = "You signed out of the console and of Tether; the console's tokens were revoked.";
    render(p, StatusCode::OK, MessagePage { title: "Signed out", text, signin: true }.render())
}

// ---------- rows ----------

pub(crate) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub checked: bool,
}

/// The binding types as WSO2's Protocol tab lists them, one line of help each.
pub(crate) fn binding_choices(current: BindingType) -> Vec<Choice> {
    const HELP: &[(&str, &str, &str)] = &[
        ("none", "None", "Not bound: whoever holds the token can use it (a plain bearer token)."),
        ("cookie", "Cookie", "Bound to the browser that signed in: the atbv cookie must come with the token."),
        (
            "sso-session",
            "SSO session",
            "Bound to the user's sign-in session: the token stops working when the session ends.",
        ),
        (
            "certificate",
            "Certificate",
            "Bound to the client's TLS certificate (RFC 8705 mTLS): every call must use the same certificate.",
        ),
        ("device-flow", "Device flow", "Bound to the device that completed the device authorization (RFC 8628)."),
        (
            "client-request",
            "Client request",
            "Bound to the tokenBindingId the client sends with its token request, and again with each use.",
        ),
        ("dpop", "DPoP", "Bound to the client's DPoP key (RFC 9449): each call carries a proof signed with it."),
    ];
    HELP.iter().map(|(v, l, h)| Choice { value: v, label: l, help: h, checked: *v == current.as_str() }).collect()
}

pub(crate) fn grant_choices(current: &[GrantType]) -> Vec<Choice> {
    const G: &[(&str, &str, &str)] = &[
        ("authorization_code", "Authorization code", "Browser sign-in with PKCE; needs redirect URIs."),
        ("refresh_token", "Refresh token", "New access tokens without signing in again."),
        ("client_credentials", "Client credentials", "The app acts as itself (machine to machine)."),
        ("password", "Password", "The app sends the user's password (legacy; avoid)."),
        ("urn:ietf:params:oauth:grant-type:device_code", "Device code", "TVs and command lines (RFC 8628)."),
        (
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "Token exchange",
            "Exchange one token for another (RFC 8693).",
        ),
    ];
    G.iter()
        .map(|(v, l, h)| Choice { value: v, label: l, help: h, checked: current.iter().any(|g| g.as_str() == *v) })
        .collect()
}

/// The values of the application form (create and edit).
pub(crate) struct AppForm {
    pub client_id: String,
    pub name: String,
    pub grants: Vec<Choice>,
    pub redirect_uris: String,
    pub public: bool,
    pub auth_method: String,
    pub token_type: String,
    pub bindings: Vec<Choice>,
    pub validate_binding: bool,
    pub revoke_on_logout: bool,
    pub scopes: String,
    pub profile: String,
}

pub(crate) const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
];

pub(crate) struct AppRow {
    pub client_id: String,
    pub name: String,
    pub grants: String,
    pub binding: String,
    pub token_type: String,
    pub public: bool,
}

pub(crate) struct UserRow {
    pub username: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created: String,
}

impl UserRow {
    pub fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    pub fn roles_text(&self) -> String {
        if self.roles.is_empty() { "—".into() } else { self.roles.join(", ") }
    }
}

pub(crate) struct SessionRow {
    pub id: String,
    pub created: String,
    pub last_seen: String,
    pub ip: String,
    pub user_agent: String,
    pub live: bool,
}

pub(crate) struct TokenRow {
    pub id: String,
    pub kind: &'static str,
    pub format: &'static str,
    pub client_id: String,
    pub username: String,
    pub binding: &'static str,
    pub issued: String,
    pub expires: String,
    pub state: &'static str,
}

pub(crate) struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub state: &'static str,
    pub created: String,
    pub age: String,
}

pub(crate) struct EventRow {
    pub id: String,
    pub time: String,
    pub kind: String,
    pub client_id: String,
    pub username: String,
    pub ip: String,
    pub summary: String,
    pub detail: String,
    /// For `binding.mismatch`: the token's app and user (links).
    pub token_app: Option<String>,
    pub token_user: Option<String>,
}

/// RFC 3339 at seconds, UTC.
pub(crate) fn time(t: i64) -> String {
    tether_core::cert::rfc3339(t)
}

/// An age such as "3 d", "5 h", "12 min".
pub(crate) fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s >= 86_400 => format!("{} d", s / 86_400),
        s if s >= 3600 => format!("{} h", s / 3600),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

// ---------- pages ----------

#[derive(Template)]
#[template(path = "console/overview.html")]
pub(crate) struct OverviewPage {
    pub nav: Nav,
    pub apps: usize,
    pub users: usize,
    pub active_tokens: usize,
    pub admins: usize,
    pub warnings: Vec<String>,
    pub keys: Vec<KeyRow>,
    pub events: Vec<EventRow>,
}

#[derive(Template)]
#[template(path = "console/apps.html")]
pub(crate) struct AppsPage {
    pub nav: Nav,
    pub q: String,
    pub apps: Vec<AppRow>,
    pub flash: Option<String>,
}

#[derive(Template)]
#[template(path = "console/app.html")]
pub(crate) struct AppPage {
    pub nav: Nav,
    pub new: bool,
    pub app: AppForm,
    pub auth_methods: &'static [&'static str],
    pub error: Option<String>,
    pub flash: Option<String>,
}

#[derive(Template)]
#[template(path = "console/secret.html")]
pub(crate) struct SecretPage {
    pub nav: Nav,
    pub client_id: String,
    pub name: String,
    pub secret: Option<String>,
    pub created: bool,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub(crate) struct ConfirmPage {
    pub nav: Nav,
    pub title: String,
    pub text: String,
    pub action: String,
    pub button: String,
    pub back: String,
    pub fresh: bool,
    pub reauth: String,
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub(crate) struct UsersPage {
    pub nav: Nav,
    pub q: String,
    pub users: Vec<UserRow>,
    pub flash: Option<String>,
}

#[derive(Template)]
#[template(path = "console/user_new.html")]
pub(crate) struct UserNewPage {
    pub nav: Nav,
    pub username: String,
    pub email: String,
    pub name: String,
    pub admin: bool,
    pub viewer: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/user.html")]
pub(crate) struct UserPage {
    pub nav: Nav,
    pub user: UserRow,
    pub sessions: Vec<SessionRow>,
    pub flash: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
pub(crate) struct TokensPage {
    pub nav: Nav,
    pub client_id: String,
    pub username: String,
    pub binding: String,
    pub bindings: &'static [BindingType],
    pub tokens: Vec<TokenRow>,
    pub flash: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
pub(crate) struct KeysPage {
    pub nav: Nav,
    pub keys: Vec<KeyRow>,
    pub flash: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/events.html")]
pub(crate) struct EventsPage {
    pub nav: Nav,
    pub kind: String,
    pub username: String,
    pub client_id: String,
    pub since: String,
    pub until: String,
    pub kinds: &'static [&'static str],
    pub events: Vec<EventRow>,
    pub error: Option<String>,
}
