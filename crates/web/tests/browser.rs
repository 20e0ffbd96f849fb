//! The viewer in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`). Opens the viewer on an example study it writes
//! itself, switches a heat map, enters the blinded mode, rates a map, reloads, and finds
//! the rating kept and the next map shown. Ignored by default (it needs the browser);
//! `.ci/run` runs it. `LEUKEX_SCREENSHOT_DIR=DIR` keeps screenshots of the pages.

mod common;
mod webdriver;

use std::net::SocketAddr;

use fantoccini::Locator;
use leukex_web::RoundConfig;
use leukex_web::example::write_example_study;
use serde_json::json;
use webdriver::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (run by .ci/run)"]
async fn browse_switch_a_heat_map_rate_blinded_reload_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    write_example_study(dir.path(), 6, 96, 5).unwrap();
    let round = RoundConfig {
        seed: 1,
        per_stratum: 2,
        calibration: 1,
        repeat_fraction: 0.1,
    };
    let addr: SocketAddr = common::serve(dir.path(), round);
    let base = format!("http://{addr}");
    let (_driver, driver_port) = start_chromedriver();
    let c = browser(driver_port).await;

    // Browse: every model x method tile of the first images; then one method only.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_ready(&c).await;
    let tiles = c.find_all(Locator::Css(".tile[data-map]")).await.unwrap();
    assert_eq!(tiles.len(), 6 * 2 * 3, "6 images x 2 models x 3 methods");
    let mode = c.find(Locator::Css("#f-mode")).await.unwrap();
    mode.select_by_value("top-10").await.unwrap();
    until("per-class numbers", || async {
        !c.find_all(Locator::Css("table.shares"))
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    screenshot(&c, "viewer-browse.png").await;
    let method = c.find(Locator::Css("#f-method")).await.unwrap();
    method.select_by_value("grad-cam").await.unwrap();
    let tiles = c.find_all(Locator::Css(".tile[data-map]")).await.unwrap();
    assert_eq!(tiles.len(), 6 * 2);
    for t in &tiles {
        let id = t.attr("data-map").await.unwrap().unwrap();
        assert!(id.ends_with("/grad-cam"), "{id}");
        let src = t
            .find(Locator::Css("img.heat"))
            .await
            .unwrap()
            .attr("src")
            .await
            .unwrap()
            .unwrap();
        assert!(src.contains("grad-cam"), "{src}");
    }
    // The heat map switched is drawn: the browser decoded a PNG of the map's size.
    until("the switched heat map", || async {
        c.execute(
            "const i = document.querySelector('.tile img.heat'); return i.complete && i.naturalWidth;",
            vec![],
        )
        .await
        .unwrap()
            == json!(96)
    })
    .await;

    // Blinded mode: start, rate the first map, reload, find the next map.
    let hidden = [
        "resnet18",
        "vgg19",
        "grad-cam",
        "lrp-epsilon",
        "_1.tif",
        "_0.tif",
    ];
    let (first, _) = rate_the_first_map_blinded_and_reload(
        &c,
        &base,
        ("Dr Test", "hematopathologist"),
        &hidden,
        Some("viewer-rate.png"),
    )
    .await;

    // The rating is stored as given.
    let rows = common::rating_rows(addr);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains(&format!(
            ",Dr Test,hematopathologist,0,calibration,{first},"
        )),
        "{rows:?}"
    );
    assert!(rows[0].contains(",2,true,"), "{rows:?}");

    c.goto(&format!("{base}/summary")).await.unwrap();
    wait_ready(&c).await;
    screenshot(&c, "viewer-summary.png").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (run by .ci/run)"]
async fn correct_a_mask_paint_a_stroke_undo_one_save_and_find_the_corrected_file() {
    const SIZE: u32 = 96;
    let dir = tempfile::tempdir().unwrap();
    write_example_study(dir.path(), 2, SIZE, 5).unwrap();
    let addr: SocketAddr = common::serve(dir.path(), RoundConfig::default());
    let stem = common::get(addr, "/api/maps").json()["images"][0]["stem"]
        .as_str()
        .unwrap()
        .to_string();
    let masks = dir.path().join("data/masks");
    let original_path = masks.join(format!("{stem}.png"));
    let original_bytes = std::fs::read(&original_path).unwrap();
    let original = leukex_data::MorphologyMask::read_png(
        &original_path,
        &leukex_data::LabelTable::leukex_written(),
    )
    .unwrap();
    let (_driver, driver_port) = start_chromedriver();
    let c = browser(driver_port).await;

    // From the browse page's link to the painter of the first image.
    c.goto(&format!("http://{addr}/")).await.unwrap();
    wait_ready(&c).await;
    let link = attr(&c, &format!(".row[data-stem='{stem}'] h2 a"), "href").await;
    assert_eq!(link, Some(format!("/correct?stem={stem}")));
    c.goto(&format!("http://{addr}/correct?stem={stem}"))
        .await
        .unwrap();
    wait_ready(&c).await;
    // 96 pixels shown at zoom 5: one mask pixel is 5 CSS pixels.
    assert_eq!(
        c.execute(
            "return document.getElementById('overlay').getBoundingClientRect().width;",
            vec![]
        )
        .await
        .unwrap(),
        json!(480)
    );
    let canvas = c.find(Locator::Css("#overlay")).await.unwrap();

    // Key 5: red blood cell; a horizontal stroke through the centre, brush 6 px.
    press(&c, &['5']).await;
    assert!(
        attr(&c, "#class-4", "class")
            .await
            .unwrap()
            .contains("active")
    );
    drag(&c, &canvas, (-100.0, 0.0), (100.0, 0.0)).await;
    // Key 2: nucleus; a vertical stroke near the left edge.
    press(&c, &['2']).await;
    drag(&c, &canvas, (-220.0, -100.0), (-220.0, 100.0)).await;
    assert_eq!(attr(&c, "#undo", "disabled").await, None);
    // Ctrl+Z undoes it.
    press(&c, &[fantoccini::key::Key::Control.into(), 'z']).await;
    type_into(&c, "#editor", "Dr Brush").await;
    click(&c, "#save").await;
    until("the save", || async {
        attr(&c, "body", "data-version").await.as_deref() == Some("1")
    })
    .await;
    let status = text(&c, "#status").await;
    assert!(status.starts_with("Saved version 1:"), "{status}");
    until("the history row", || async {
        !c.find_all(Locator::Css("#history tr[data-version='1']"))
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    screenshot(&c, "viewer-correct.png").await;

    // The corrected file: the stroke's pixels are red blood cell, the undone stroke's
    // pixels are as before, the original untouched.
    let corrected = leukex_data::MorphologyMask::read_png(
        &masks.join(format!("corrected/{stem}.png")),
        &leukex_data::LabelTable::leukex_written(),
    )
    .unwrap();
    let rbc = Some(leukex_data::MorphologyClass::Rbc);
    // Centre (48, 48); the stroke spans 200 / 5 = 40 pixels: x 28..68 on row 48.
    for x in 30..66 {
        for y in 47..50 {
            assert_eq!(corrected.get(x, y), rbc, "stroke pixel ({x}, {y})");
        }
    }
    let changed: Vec<(u32, u32)> = (0..SIZE)
        .flat_map(|y| (0..SIZE).map(move |x| (x, y)))
        .filter(|&(x, y)| corrected.get(x, y) != original.get(x, y))
        .collect();
    assert!(!changed.is_empty());
    for &(x, y) in &changed {
        assert!(
            (42..=54).contains(&y) && (20..=76).contains(&x),
            "({x}, {y}) changed"
        );
        assert_eq!(corrected.get(x, y), rbc);
    }
    assert_eq!(std::fs::read(&original_path).unwrap(), original_bytes);
    let log = std::fs::read_to_string(masks.join("corrected/history.csv")).unwrap();
    assert!(
        log.lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("{stem},1,")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            ",Dr Brush,history/{stem}.v1.png,{},",
            changed.len()
        )),
        "{log}"
    );
    c.close().await.unwrap();
}
