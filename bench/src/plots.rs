//! The report's plots, drawn with `plotters` (SVG) from the flat metrics.

use std::path::Path;

use plotters::prelude::*;
use serde_json::{Map, Value};

use crate::common::Error;

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn series(m: &Map<String, Value>, pools: &[f64], key: &str) -> Vec<(f64, f64)> {
    pools
        .iter()
        .filter_map(|p| {
            m.get(&format!("{key}_pool_{p}"))
                .and_then(Value::as_f64)
                .filter(|v| *v > 0.0)
                .map(|v| (*p, v))
        })
        .collect()
}

fn log_chart(path: &Path, title: &str, y_label: &str, lines: &[Series]) -> Result<(), Error> {
    let points: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.2.iter().copied()).collect();
    if points.is_empty() {
        return Ok(());
    }
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max) * 2.0;
    let y_min = points.iter().map(|p| p.1).fold(f64::MAX, f64::min) / 2.0;
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 3.0;
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (5.0..x_max).log_scale(),
            (y_min.max(0.01)..y_max).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("pool size (idle hosts / ready rooms)")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        })
        .draw()?;
    // Last to first, the second series wider: where two coincide, both stay visible.
    for (i, (name, color, data)) in lines.iter().enumerate().rev() {
        let color = *color;
        let width = if i == 1 { 6 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                data.iter().copied(),
                color
                    .mix(if i == 1 { 0.6 } else { 1.0 })
                    .stroke_width(width),
            ))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
        chart.draw_series(data.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn cold_start_chart(m: &Map<String, Value>, path: &Path) -> Result<(), Error> {
    let mut bars: Vec<(String, f64)> = m
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("init_ms_")?.to_string(), v.as_f64()?)))
        .collect();
    if bars.is_empty() {
        let _ = std::fs::remove_file(path);
        return Ok(());
    }
    bars.sort_by(|a, b| b.1.total_cmp(&a.1));
    let hello = m
        .get("init_ms_bench-hello")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let y_max = bars.iter().map(|b| b.1).fold(hello * 1.6, f64::max) * 1.15;
    // Horizontal bars: one row per binary, the slowest on top.
    bars.reverse();
    let rows = bars.len();
    let root = SVGBackend::new(path, (760, 100 + 26 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Init: exec to first Runtime API poll (median)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..y_max, (0..rows).into_segmented())?;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ms")
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (name, ms))| {
        let color = if name == "bench-hello" { GREEN } else { BLUE };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*ms, SegmentValue::Exact(i + 1)),
            ],
            color.mix(0.7).filled(),
        );
        bar.set_margin(3, 3, 0, 0);
        bar
    }))?;
    if hello > 0.0 {
        chart
            .draw_series(LineSeries::new(
                [
                    (hello * 1.5, SegmentValue::Exact(0)),
                    (hello * 1.5, SegmentValue::Exact(rows)),
                ],
                RED.stroke_width(2),
            ))?
            .label("goal: 1.5 × hello")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

pub fn draw(m: &Map<String, Value>, dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let pools: Vec<f64> = m
        .get("pools")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    log_chart(
        &dir.join("items_read.svg"),
        "Items DynamoDB examined per claim (ScannedCount)",
        "items read",
        &[
            (
                "find-match (IdleHosts query)",
                BLUE,
                series(m, &pools, "find_match_items_read"),
            ),
            (
                "claimRoom (ReadyRooms query)",
                GREEN,
                series(m, &pools, "claim_room_items_read"),
            ),
            (
                "Arbiter-style Scan claim",
                RED,
                series(m, &pools, "arbiter_scan_items_read"),
            ),
        ],
    )?;
    log_chart(
        &dir.join("latency.svg"),
        "p50 latency per claim through the local stack",
        "ms",
        &[
            ("find-match", BLUE, series(m, &pools, "find_match_p50_ms")),
            ("claimRoom", GREEN, series(m, &pools, "claim_room_p50_ms")),
            (
                "Arbiter-style Scan claim",
                RED,
                series(m, &pools, "arbiter_scan_p50_ms"),
            ),
        ],
    )?;
    cold_start_chart(m, &dir.join("cold_start.svg"))?;
    Ok(())
}
