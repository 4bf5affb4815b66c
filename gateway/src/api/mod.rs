//! The HTTP API (axum): versioned JSON routes, signed-request authentication,
//! one error type with stable codes.
//!
//! Route groups: [`health`] (`/healthz`, `/readyz`, the OpenAPI document),
//! [`chain`] (public headers, proof bundles for members), [`records`]
//! (department publication, supersession, revocation, import, read-back and
//! field disclosure).

pub mod applications;
pub mod chain;
pub mod health;
pub mod matches;
pub mod records;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::AppState;

/// An API error: an HTTP status, a stable code, a message and, where it
/// applies, the field at fault. Never carries internals or personal data.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `auth.replayed`.
    pub code: std::borrow::Cow<'static, str>,
    /// Explanation.
    pub message: String,
    /// The field at fault.
    pub field: Option<String>,
}

impl ApiError {
    /// A new error.
    pub fn new(
        status: StatusCode,
        code: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
        }
    }
    /// Names the field at fault.
    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }
    /// 400 with a field.
    pub fn bad(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message).field(field)
    }
    /// 422 with a field.
    pub fn unprocessable(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).field(field)
    }
    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    /// 500 for storage failures (details go to the log, not the client).
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the gateway log",
        )
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}
#[derive(Serialize)]
struct ErrorInner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorInner {
                code: &self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        // For the refusal counter of the metrics middleware.
        resp.extensions_mut().insert(RefusalCode(self.code.clone()));
        resp
    }
}

/// Path parameters, as axum's `Path`, but a parameter that does not decode
/// (not UTF-8 after percent-decoding, say) is refused with the API's JSON
/// error naming the parameter, like every other bad input.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Path(t)),
            Err(e) => {
                let text = e.body_text();
                // axum names the parameter between backticks.
                let field = text.split('`').nth(1).unwrap_or("path").to_owned();
                Err(ApiError::bad(
                    "request.invalid",
                    field,
                    format!("path parameter: {text}"),
                ))
            }
        }
    }
}

/// The stable code of an error response, for `tongban_refusals_total`.
#[derive(Debug, Clone)]
pub struct RefusalCode(pub std::borrow::Cow<'static, str>);

impl From<crate::ledger::LedgerError> for ApiError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        match e.code() {
            // Logged and counted by the ledger where it was found.
            "store.corrupt" => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store.corrupt",
                "a stored value failed its integrity check; it is not served (see the gateway log, run `tongban store check`)",
            ),
            "store.full" => {
                tracing::error!(error = %e, "write refused: storage full");
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "store.full",
                    "the gateway's storage is full; nothing was written; retry once space is freed",
                )
            }
            _ => ApiError::internal(e),
        }
    }
}

/// A request signed by a registry member, with its body read (within the size
/// limit) and verified.
pub struct Signed {
    /// The authenticated member.
    pub member: proofs::trust::Member,
    /// The body.
    pub body: Bytes,
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

impl FromRequest<Arc<AppState>> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let limit = state.max_body_bytes;
        if let Some(len) =
            header(&parts.headers, "content-length").and_then(|v| v.parse::<u64>().ok())
            && len > limit as u64
        {
            return Err(too_large(limit));
        }
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|e| body_error(&e, limit))?;
        for name in [
            crate::auth::MEMBER,
            crate::auth::TIMESTAMP,
            crate::auth::NONCE,
            crate::auth::SIGNATURE,
        ] {
            if parts.headers.get(name).is_some_and(|v| v.to_str().is_err()) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "auth.malformed",
                    format!("malformed header `{name}`"),
                ));
            }
        }
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let presented = crate::auth::Presented {
            member: header(&parts.headers, crate::auth::MEMBER),
            timestamp: header(&parts.headers, crate::auth::TIMESTAMP),
            nonce: header(&parts.headers, crate::auth::NONCE),
            signature: header(&parts.headers, crate::auth::SIGNATURE),
            method: parts.method.as_str(),
            path_and_query: path,
            body: &body,
        };
        match state
            .verifier
            .verify(&presented, &state.roots, state.clock.now_ms())
        {
            Ok(m) => Ok(Signed {
                member: m.clone(),
                body,
            }),
            Err(e) => {
                let status = if e == crate::auth::AuthError::Overloaded {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::UNAUTHORIZED
                };
                Err(ApiError::new(status, e.code(), e.to_string()))
            }
        }
    }
}

/// Why a request body could not be read: it did not arrive within the body
/// timeout (408), it broke off (400), or it is over the limit (413).
fn body_error(e: &axum::Error, limit: usize) -> ApiError {
    if crate::http_serve::is_body_timeout(e) {
        return timed_out();
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<hyper::Error>() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "request.incomplete",
                "the request body broke off",
            );
        }
        cur = c.source();
    }
    too_large(limit)
}

/// 408: the request did not arrive in time.
pub fn timed_out() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request.timeout",
        "the request body did not arrive within the body timeout",
    )
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request.too_large",
        format!("request body exceeds {limit} bytes"),
    )
}

impl Signed {
    /// Parses the body as JSON of type `T`, naming the field on failure.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.body)
    }
    /// Refuses members of other roles, and members of other cities (403):
    /// this gateway's records are written and read by its own city's departments.
    pub fn require_local(&self, role: proofs::trust::Role, chain_id: &str) -> Result<(), ApiError> {
        if self.member.role != role {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "auth.forbidden",
                format!(
                    "this call is for a {role:?}; `{}` is a {:?}",
                    self.member.id, self.member.role
                ),
            ));
        }
        if self.member.chain != chain_id {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "auth.other_city",
                format!(
                    "`{}` belongs to another city's chain (`{}`), not `{chain_id}`",
                    self.member.id, self.member.chain
                ),
            ));
        }
        Ok(())
    }
}

/// Parses JSON with the path of the offending field in the error.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // The plain parser first (path tracking costs about a third more on a
    // 4,096-record import); only a refused body is parsed again to name the
    // field in the error.
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "request.malformed_json"
        } else {
            "request.invalid"
        };
        let status = if code == "request.malformed_json" {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let err = ApiError::new(status, code, inner.to_string());
        if path == "." { err } else { err.field(path) }
    })
}

/// The gateway's router.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/openapi.json", get(health::openapi))
        .route("/v1/chain", get(chain::head))
        .route("/v1/chain/headers/{height}", get(chain::header))
        .route("/v1/proofs/{leaf}", get(chain::proof))
        .route("/v1/chain/export/{from}", get(chain::export))
        .route("/v1/records", post(records::publish))
        .route("/v1/records/batch", post(records::publish_batch))
        .route("/v1/records/import", post(records::import))
        .route("/v1/records/revoke", post(records::revoke))
        .route("/v1/records/{record_type}/{record_id}", get(records::read))
        .route(
            "/v1/records/{record_type}/{record_id}/versions/{version}/fields/{field}",
            get(records::disclose),
        )
        .route("/v1/matches", post(matches::ask))
        .route("/v1/applications", post(applications::submit))
        .route("/v1/applications/{id}", get(applications::status))
        .route(
            "/v1/applications/{id}/evidence",
            get(applications::evidence),
        )
        .route("/v1/inbox", get(applications::inbox))
        .route("/v1/inbox/receipt", post(applications::receipt))
        .route("/v1/access-ledger", post(matches::access_ledger))
        .route("/v1/light", get(matches::light_status))
        .route("/v1/light/{chain}/unfreeze", post(matches::unfreeze))
        .route("/metrics", get(health::metrics))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "route.method_not_allowed",
                "this route does not take this method (see the `allow` header and /v1/openapi.json)",
            )
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .fallback(|| async {
            ApiError::not_found("route.not_found", "no such route; see /v1/openapi.json")
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// The stable code of an error status that no handler chose (axum's own
/// rejections, say).
fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "request.invalid",
        404 => "route.not_found",
        405 => "route.method_not_allowed",
        408 => "request.timeout",
        411 => "request.length_required",
        413 => "request.too_large",
        414 => "request.uri_too_long",
        415 => "request.unsupported_media_type",
        431 => "request.headers_too_large",
        500..=599 => "internal",
        _ => "request.refused",
    }
}

/// The outermost layer: an error answer that is not JSON (one made by axum
/// rather than by a handler) gets the API's JSON error body, with the stable
/// code of its status and axum's short text as the message. JSON answers
/// ([`ApiError`], the 503 of `/readyz`, the 502 of a match) pass unchanged.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || json || resp.extensions().get::<RefusalCode>().is_some() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("refused")
            .to_ascii_lowercase()
    });
    let mut new = ApiError::new(status, status_code_name(status), message).into_response();
    // Keep what the answer said besides its body (`allow` on a 405, say).
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};

    async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, String, String) {
        let resp = tower_service::Service::call(&mut app.clone(), req)
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    /// An error axum makes itself (here the 415 of its `Json` extractor, in
    /// plain text) gets the API's JSON error body; a JSON error passes as is.
    #[tokio::test]
    async fn errors_made_by_axum_get_the_json_error_body() {
        let app = axum::Router::new()
            .route(
                "/json",
                axum::routing::post(|_: axum::Json<serde_json::Value>| async {}),
            )
            .route(
                "/own",
                axum::routing::get(|| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({"status": "not_ready"})),
                    )
                }),
            )
            .layer(axum::middleware::map_response(super::json_errors));
        let (status, ct, body) =
            call(&app, Request::post("/json").body(Body::from("{}")).unwrap()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(ct.starts_with("application/json"), "{ct}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "request.unsupported_media_type", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Content-Type"),
            "{v}"
        );
        let (status, _, body) = call(&app, Request::get("/own").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"status":"not_ready"}"#);
    }

    /// Every route the router serves is documented in the OpenAPI document,
    /// and nothing else is.
    #[test]
    fn openapi_documents_exactly_the_routes() {
        let src = include_str!("mod.rs");
        let src = src.split("#[cfg(test)]").next().unwrap();
        let mut routes: Vec<&str> = src
            .match_indices(".route(")
            .filter_map(|(i, m)| {
                src[i + m.len()..]
                    .trim_start()
                    .strip_prefix('"')?
                    .split('"')
                    .next()
            })
            .collect();
        routes.sort_unstable();
        let doc: serde_json::Value = serde_json::from_str(super::health::OPENAPI).unwrap();
        let mut documented: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        documented.sort_unstable();
        assert_eq!(routes, documented);
    }
}
