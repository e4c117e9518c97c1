//! The admin listener: `/healthz` (the process runs), `/readyz` (config loaded and every Backend's credentials
//! valid now; JSON details either way) and `/metrics` (OpenMetrics text).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use http::StatusCode;

use crate::state::Gateway;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(gateway)
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let (ready, body) = gw.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> impl axum::response::IntoResponse {
    gw.refresh_credential_gauges();
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gw.metrics.encode(),
    )
}
