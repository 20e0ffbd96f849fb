//! The HTTP side: pages and scripts embedded in the binary, the JSON API, PNGs drawn on
//! request. Every failure is a 4xx with its reason (or a 500 naming the file for a broken
//! study folder); nothing a request sends can make the server panic or read outside the
//! served roots.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use leukex_data::MorphologyClass;
use leukex_evaluate::{ClassShares, Mode, mode::select};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::correct::{self, CorrectionRefusal, MAX_SAVE_BODY, MaskFiles, Painted};
use crate::error::WebError;
use crate::paths::{PathRefusal, content_type, resolve};
use crate::render::{MapStyle, image_png, map_png, mask_png, read_map, selection_png};
use crate::round::{RoundConfig, Scale, build_round};
use crate::store::{RatingRefusal, Store, ratings_csv};
use crate::study::{MapInfo, Study};
use crate::summary::summarise;

/// What `leukex serve` serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub dir: PathBuf,
    pub scale: Scale,
    pub round: RoundConfig,
}

pub struct App {
    pub study: Study,
    store: Mutex<Store>,
    /// Held while a mask correction is saved: versions are numbered one after another.
    corrections: Mutex<()>,
    scale: Scale,
    round: RoundConfig,
}

/// The ratings database of a study folder.
pub fn ratings_path(dir: &std::path::Path) -> PathBuf {
    dir.join("ratings.sqlite")
}

impl App {
    /// Reads the study folder and opens (or creates) its ratings database.
    pub fn open(opts: &ServeOptions) -> Result<App, WebError> {
        let study = Study::open(&opts.dir)?;
        opts.scale
            .check()
            .map_err(|r| WebError::Other(format!("rating scale: {r}")))?;
        let store = Store::open(&ratings_path(&study.root))?;
        store.check_settings(&opts.scale, &opts.round)?;
        Ok(App {
            study,
            store: Mutex::new(store),
            corrections: Mutex::new(()),
            scale: opts.scale.clone(),
            round: opts.round.clone(),
        })
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions).
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A refused request: status and reason, sent as `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(reason: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, reason.into())
    }
    fn not_found(reason: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, reason.into())
    }
}

impl From<WebError> for ApiError {
    fn from(e: WebError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<PathRefusal> for ApiError {
    fn from(e: PathRefusal) -> Self {
        let status = match e {
            PathRefusal::NotFound(_) => StatusCode::NOT_FOUND,
            PathRefusal::Outside(_) => StatusCode::FORBIDDEN,
            PathRefusal::NotRelative(_) => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn png(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=600"),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// Runs blocking work (file reads, PNG encoding) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

const BROWSE_HTML: &str = include_str!("../assets/browse.html");
const RATE_HTML: &str = include_str!("../assets/rate.html");
const SUMMARY_HTML: &str = include_str!("../assets/summary.html");
const CORRECT_HTML: &str = include_str!("../assets/correct.html");
const ASSETS: [(&str, &str, &str); 6] = [
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/common.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "browse.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/browse.js"),
    ),
    (
        "rate.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/rate.js"),
    ),
    (
        "summary.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/summary.js"),
    ),
    (
        "correct.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/correct.js"),
    ),
];

/// The router of the viewer over an opened study.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(BROWSE_HTML) }))
        .route("/rate", get(|| async { Html(RATE_HTML) }))
        .route("/summary", get(|| async { Html(SUMMARY_HTML) }))
        .route("/correct", get(|| async { Html(CORRECT_HTML) }))
        .route("/assets/{name}", get(asset))
        .route("/api/maps", get(maps))
        .route("/api/map.png", get(map_image))
        .route("/api/image.png", get(image))
        .route("/api/mask.png", get(mask))
        .route("/api/selection.png", get(selection))
        .route("/api/shares", get(shares))
        .route("/api/scale", get(scale))
        .route("/api/raters", post(add_rater))
        .route("/api/raters/{name}", get(rater))
        .route("/api/round/{name}/next", get(next_item))
        .route("/api/round/{name}/reveal", get(reveal))
        .route("/api/blind/{token}/map.png", get(blind_map))
        .route("/api/blind/{token}/image.png", get(blind_image))
        .route("/api/ratings", post(add_rating))
        .route("/api/ratings.csv", get(export_csv))
        .route("/api/summary", get(summary))
        .route(
            "/api/masks/{stem}",
            get(mask_to_paint)
                .post(save_correction)
                .layer(DefaultBodyLimit::max(MAX_SAVE_BODY)),
        )
        .route("/api/masks/{stem}/history", get(correction_history))
        .route("/files/{*path}", get(file))
        .fallback(|| async { ApiError::not_found("no such page or API endpoint") })
        .with_state(app)
}

async fn asset(UrlPath(name): UrlPath<String>) -> ApiResult<Response> {
    let (_, mime, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::not_found(format!("no asset `{name}`")))?;
    Ok(([(header::CONTENT_TYPE, *mime)], *body).into_response())
}

async fn maps(State(app): State<Arc<App>>) -> axum::Json<Value> {
    let s = &app.study;
    axum::Json(json!({
        "root": s.root,
        "models": s.models,
        "methods": s.methods,
        "classes": s.classes,
        // Whether a correction was saved is asked now: the painter may have saved one
        // since the server started.
        "images": s.images.iter().map(|i| {
            let mut v = json!(i);
            v["mask_corrected"] = json!(i.mask.as_ref().is_some_and(|m| MaskFiles::of(m).corrected().is_file()));
            v
        }).collect::<Vec<_>>(),
        "maps": s.maps,
        "notes": s.notes,
        "modes": Mode::defaults().iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "morphology_classes": MorphologyClass::ALL.iter().map(|c| json!({
            "name": c.name(),
            "colour": crate::render::class_colour(*c),
        })).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
struct MapQuery {
    id: String,
    style: Option<String>,
    mode: Option<String>,
    #[serde(default)]
    mask: MaskChoice,
}

/// Which mask an image is shown and counted with: the latest correction saved by the
/// painter where there is one (the default), or the original.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MaskChoice {
    #[default]
    Latest,
    Original,
}

fn find_map<'a>(app: &'a App, id: &str) -> ApiResult<&'a MapInfo> {
    app.study
        .map(id)
        .ok_or_else(|| ApiError::not_found(format!("no heat map `{id}`")))
}

async fn map_image(
    State(app): State<Arc<App>>,
    q: Result<Query<MapQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let style = match q.style.as_deref() {
        None | Some("native") => MapStyle::Native,
        Some("blinded") => MapStyle::Blinded,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "unknown style `{other}`; accepted: native, blinded"
            )));
        }
    };
    let m = find_map(&app, &q.id)?.clone();
    blocking(move || Ok(png(map_png(&read_map(&m.path)?, m.signed, style)))).await
}

fn parse_mode(q: &MapQuery) -> ApiResult<Mode> {
    let s = q
        .mode
        .as_deref()
        .ok_or_else(|| ApiError::bad("missing `mode` (e.g. paper, positive, top-10)"))?;
    Mode::from_str(s).map_err(ApiError::bad)
}

async fn selection(
    State(app): State<Arc<App>>,
    q: Result<Query<MapQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let mode = parse_mode(&q)?;
    let m = find_map(&app, &q.id)?.clone();
    blocking(move || {
        let map = read_map(&m.path)?;
        let sel = select(mode, &map.values, &m.method, None);
        Ok(png(selection_png(&sel, map.width, map.height)))
    })
    .await
}

/// Per-class numbers of one map in one mode, counted live against its mask.
async fn shares(
    State(app): State<Arc<App>>,
    q: Result<Query<MapQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let mode = parse_mode(&q)?;
    let m = find_map(&app, &q.id)?.clone();
    let app2 = app.clone();
    blocking(move || {
        let shown = mask_of(&app2, &m.stem, q.mask)?;
        let mask = shown.mask;
        let map = read_map(&m.path)?;
        let (mw, mh) = mask.dimensions();
        if (mw as usize, mh as usize) != (map.width, map.height) {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "heat map {} is {}x{} but its mask is {mw}x{mh}",
                    m.id, map.width, map.height
                ),
            ));
        }
        let shares = ClassShares::count(&select(mode, &map.values, &m.method, None), &mask);
        Ok(axum::Json(json!({
            "map": m.id,
            "mode": mode.to_string(),
            "classes": MorphologyClass::ALL.iter().map(|c| json!({
                "name": c.name(),
                "share": shares.share[c.index()],
                "area_share": shares.area_share[c.index()],
                "lift": shares.lift[c.index()],
            })).collect::<Vec<_>>(),
            "cell": {"share": shares.cell_share, "area_share": shares.cell_area_share, "lift": shares.cell_lift},
            "undefined": shares.undefined,
            "mask": {"corrected": shown.corrected, "version": shown.version, "file": shown_path(&app2, &shown.file)},
        }))
        .into_response())
    })
    .await
}

/// A mask as the browse page shows it.
struct ShownMask {
    mask: leukex_data::MorphologyMask,
    /// Read from the corrected folder.
    corrected: bool,
    /// The correction's version (0: none saved).
    version: u32,
    file: PathBuf,
}

/// The morphology mask of image `stem`: its latest correction or its original.
fn mask_of(app: &App, stem: &str, choice: MaskChoice) -> ApiResult<ShownMask> {
    let (files, table) = mask_files(app, stem)?;
    Ok(match choice {
        MaskChoice::Original => ShownMask {
            mask: leukex_data::MorphologyMask::read_png(&files.original, &table)
                .map_err(WebError::from)?,
            corrected: false,
            version: 0,
            file: files.original,
        },
        MaskChoice::Latest => {
            let cur = correct::current(&files, &table)?;
            ShownMask {
                mask: cur.mask,
                corrected: cur.from_corrected,
                version: cur.version,
                file: if cur.from_corrected {
                    files.corrected()
                } else {
                    files.original
                },
            }
        }
    })
}

#[derive(Deserialize)]
struct StemQuery {
    stem: String,
    #[serde(default)]
    mask: MaskChoice,
}

async fn image(
    State(app): State<Arc<App>>,
    q: Result<Query<StemQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let path = app
        .study
        .image(&q.stem)
        .and_then(|i| i.source.clone())
        .ok_or_else(|| ApiError::not_found(format!("no image file for `{}`", q.stem)))?;
    blocking(move || Ok(png(image_png(&path)?))).await
}

async fn mask(
    State(app): State<Arc<App>>,
    q: Result<Query<StemQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let app2 = app.clone();
    let mut r = blocking(move || Ok(png(mask_png(&mask_of(&app2, &q.stem, q.mask)?.mask)))).await?;
    // A correction saved meanwhile must show on the next load.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

async fn scale(State(app): State<Arc<App>>) -> axum::Json<Scale> {
    axum::Json(app.scale.clone())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RaterBody {
    name: String,
    expertise: String,
}

fn check_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::bad(format!("`{field}` is empty")));
    }
    if v.chars().count() > max {
        return Err(ApiError::bad(format!(
            "`{field}` is longer than {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::bad(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(v.to_string())
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|q| q.0)
        .map_err(|e| ApiError::bad(format!("bad query: {}", e.body_text())))
}

fn json_body<T>(body: Result<axum::Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|b| b.0)
        .map_err(|e| ApiError::bad(format!("bad request body: {}", e.body_text())))
}

async fn add_rater(
    State(app): State<Arc<App>>,
    body: Result<axum::Json<RaterBody>, JsonRejection>,
) -> ApiResult<Response> {
    let body = json_body(body)?;
    let name = check_text("name", &body.name, 80)?;
    let expertise = check_text("expertise", &body.expertise, 200)?;
    let existing = app.store().rater(&name)?;
    if let Some(r) = existing {
        return Ok((StatusCode::OK, axum::Json(r)).into_response());
    }
    let items = build_round(&app.study.maps, &app.round, &name);
    if items.is_empty() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "the study has no heat maps to rate".into(),
        ));
    }
    let r = app.store().add_rater(&name, &expertise, &items)?;
    Ok((StatusCode::CREATED, axum::Json(r)).into_response())
}

async fn rater(State(app): State<Arc<App>>, UrlPath(name): UrlPath<String>) -> ApiResult<Response> {
    let r = app
        .store()
        .rater(&name)?
        .ok_or_else(|| ApiError::not_found(format!("no rater `{name}`")))?;
    Ok(axum::Json(r).into_response())
}

async fn next_item(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Response> {
    let store = app.store();
    let r = store
        .rater(&name)?
        .ok_or_else(|| ApiError::not_found(format!("no rater `{name}`")))?;
    let item = store.next_item(&name)?;
    Ok(axum::Json(json!({
        "rater": r.name,
        "done": r.done,
        "total": r.total,
        "finished": item.is_none(),
        // Only the opaque token: model, method, image and class stay hidden.
        "item": item.map(|i| json!({
            "map": i.token,
            "position": i.position,
            "calibration": i.kind == crate::round::ItemKind::Calibration,
        })),
    }))
    .into_response())
}

/// What a rater rated, revealed once their round is finished: per rated item the map's
/// model, method, image, true class and prediction with the rater's score. Until then a
/// 403 that says how far the round is, and nothing about any map.
async fn reveal(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Response> {
    let (r, rows) = {
        let store = app.store();
        let r = store
            .rater(&name)?
            .ok_or_else(|| ApiError::not_found(format!("no rater `{name}`")))?;
        if store.next_item(&name)?.is_some() {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "the round of `{name}` is not finished ({} of {} maps rated): model, method, \
                     class and prediction stay hidden until every map of the round is rated",
                    r.done, r.total
                ),
            ));
        }
        (r, store.ratings_of(&name)?)
    };
    let items: Vec<Value> = rows
        .iter()
        .map(|g| {
            let m = app.study.map(&g.map);
            json!({
                "position": g.position,
                "kind": g.kind.as_str(),
                "item": g.token,
                "map": g.map,
                "model": m.map(|m| &m.model),
                "stem": m.map(|m| &m.stem),
                "method": m.map(|m| &m.method),
                "true_class": m.and_then(|m| m.true_class.as_ref()),
                "predicted": m.and_then(|m| m.predicted.as_ref()),
                "correct": m.and_then(|m| m.correct),
                "score": g.score,
                "morphology": g.morphology,
                "created": g.created,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "rater": r.name,
        "expertise": r.expertise,
        "done": r.done,
        "total": r.total,
        "items": items,
    }))
    .into_response())
}

fn blind_item(app: &App, token: &str) -> ApiResult<MapInfo> {
    let (_, item) = app
        .store()
        .item(token)?
        .ok_or_else(|| ApiError::not_found(format!("no blinded map `{token}`")))?;
    app.study.map(&item.map).cloned().ok_or_else(|| {
        ApiError::not_found(format!("the study no longer has the map behind `{token}`"))
    })
}

async fn blind_map(
    State(app): State<Arc<App>>,
    UrlPath(token): UrlPath<String>,
) -> ApiResult<Response> {
    let m = blind_item(&app, &token)?;
    blocking(move || {
        Ok(png(map_png(
            &read_map(&m.path)?,
            m.signed,
            MapStyle::Blinded,
        )))
    })
    .await
}

async fn blind_image(
    State(app): State<Arc<App>>,
    UrlPath(token): UrlPath<String>,
) -> ApiResult<Response> {
    let m = blind_item(&app, &token)?;
    let path = app
        .study
        .image(&m.stem)
        .and_then(|i| i.source.clone())
        .ok_or_else(|| ApiError::not_found("this map has no image"))?;
    blocking(move || Ok(png(image_png(&path)?))).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RatingBody {
    rater: String,
    map: String,
    score: i64,
    morphology: bool,
}

async fn add_rating(
    State(app): State<Arc<App>>,
    body: Result<axum::Json<RatingBody>, JsonRejection>,
) -> ApiResult<Response> {
    let b = json_body(body)?;
    if !app.scale.contains(b.score) {
        let scores: Vec<String> = app
            .scale
            .levels
            .iter()
            .map(|l| l.score.to_string())
            .collect();
        return Err(ApiError::bad(format!(
            "score {} is not on the scale ({})",
            b.score,
            scores.join(", ")
        )));
    }
    let app2 = app.clone();
    let stored = blocking(move || {
        app2.store()
            .add_rating(&b.rater, &b.map, b.score, b.morphology)
            .map_err(|e| match e {
                RatingRefusal::UnknownRater(_) | RatingRefusal::NotInRound { .. } => {
                    ApiError::bad(e.to_string())
                }
                RatingRefusal::AlreadyRated(_) => ApiError(StatusCode::CONFLICT, e.to_string()),
                RatingRefusal::Store(e) => e.into(),
            })
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(stored)).into_response())
}

async fn export_csv(State(app): State<Arc<App>>) -> ApiResult<Response> {
    let rows = app.store().all_ratings()?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"ratings.csv\"",
            ),
        ],
        ratings_csv(&rows),
    )
        .into_response())
}

async fn summary(State(app): State<Arc<App>>) -> ApiResult<Response> {
    let rows = app.store().all_ratings()?;
    Ok(axum::Json(summarise(&rows, &app.scale)).into_response())
}

async fn file(State(app): State<Arc<App>>, UrlPath(path): UrlPath<String>) -> ApiResult<Response> {
    // The database would tell a blinded rater which map is which.
    if path.starts_with("ratings.sqlite") {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "the ratings database is not served; use /api/ratings.csv".into(),
        ));
    }
    let real = resolve(&app.study.root, &app.study.roots, &path)?;
    let bytes = tokio::fs::read(&real)
        .await
        .map_err(|e| ApiError::from(WebError::io(&real, e)))?;
    Ok(([(header::CONTENT_TYPE, content_type(&real))], bytes).into_response())
}

/// The original mask of image `stem` and its correction files. Only stems of the study
/// are accepted, so no path is ever built from the request.
fn mask_files(app: &App, stem: &str) -> ApiResult<(MaskFiles, leukex_data::LabelTable)> {
    let image = app
        .study
        .image(stem)
        .ok_or_else(|| ApiError::not_found(format!("no image `{stem}`")))?;
    let original = image
        .mask
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("image `{stem}` has no mask")))?;
    Ok((MaskFiles::of(original), app.study.mask_table(original)))
}

impl From<CorrectionRefusal> for ApiError {
    fn from(e: CorrectionRefusal) -> Self {
        let status = match &e {
            CorrectionRefusal::BadBody(_) => StatusCode::BAD_REQUEST,
            CorrectionRefusal::Stale { .. } | CorrectionRefusal::OtherTable { .. } => {
                StatusCode::CONFLICT
            }
            CorrectionRefusal::NoId { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            CorrectionRefusal::Link { .. } => StatusCode::FORBIDDEN,
            CorrectionRefusal::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// A path as the pages show it: relative to the study folder when inside it.
fn shown_path(app: &App, p: &std::path::Path) -> String {
    p.strip_prefix(&app.study.root)
        .unwrap_or(p)
        .display()
        .to_string()
}

/// The mask to paint on (the latest correction, else the original) as class runs, with
/// the classes its label table can store.
async fn mask_to_paint(
    State(app): State<Arc<App>>,
    UrlPath(stem): UrlPath<String>,
) -> ApiResult<Response> {
    let (files, table) = mask_files(&app, &stem)?;
    let has_image = app.study.image(&stem).is_some_and(|i| i.has_image);
    blocking(move || {
        let cur = correct::current(&files, &table)?;
        let storable = |t: leukex_data::LabelTarget| table.ids().any(|(_, x)| x == t);
        let (width, height) = cur.mask.dimensions();
        Ok(axum::Json(json!({
            "stem": files.stem,
            "width": width,
            "height": height,
            "version": cur.version,
            "has_image": has_image,
            "original": shown_path(&app, &files.original),
            "corrected": shown_path(&app, &files.corrected()),
            "from_corrected": cur.from_corrected,
            "classes": MorphologyClass::ALL.iter().map(|c| json!({
                "index": c.index(),
                "name": c.name(),
                "colour": crate::render::class_colour(*c),
                "paintable": storable(leukex_data::LabelTarget::Class(*c)),
            })).collect::<Vec<_>>(),
            "runs": correct::encode_runs(cur.mask.raw()),
        }))
        .into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrectionBody {
    editor: String,
    base_version: Option<u32>,
    width: u32,
    height: u32,
    runs: Vec<u64>,
}

async fn save_correction(
    State(app): State<Arc<App>>,
    UrlPath(stem): UrlPath<String>,
    body: Result<axum::Json<CorrectionBody>, JsonRejection>,
) -> ApiResult<Response> {
    // Keep the rejection's own status: 413 for a body over the limit, 415, 422, 400.
    let body = body.map(|b| b.0).map_err(|e| {
        ApiError(
            e.status(),
            format!("bad correction body: {}", e.body_text()),
        )
    })?;
    let editor = check_text("editor", &body.editor, 80)?;
    let (files, table) = mask_files(&app, &stem)?;
    let app2 = app.clone();
    let saved = blocking(move || {
        let _one_at_a_time = app2.corrections.lock().unwrap_or_else(|e| e.into_inner());
        let painted = Painted {
            editor: &editor,
            base_version: body.base_version,
            width: body.width,
            height: body.height,
            runs: &body.runs,
        };
        Ok(correct::save(&files, &table, &painted).map(|c| (c, files))?)
    })
    .await?;
    let (entry, files) = saved;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "correction": entry,
            "corrected": shown_path(&app, &files.corrected()),
            "history_file": shown_path(&app, &files.version(entry.version)),
            "log": shown_path(&app, &files.log()),
        })),
    )
        .into_response())
}

async fn correction_history(
    State(app): State<Arc<App>>,
    UrlPath(stem): UrlPath<String>,
) -> ApiResult<Response> {
    let (files, _) = mask_files(&app, &stem)?;
    blocking(move || {
        let entries = correct::history(&files)?;
        Ok(axum::Json(json!({ "stem": files.stem, "corrections": entries })).into_response())
    })
    .await
}
