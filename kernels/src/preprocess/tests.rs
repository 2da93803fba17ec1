use super::*;

fn img(width: usize, height: usize, f: impl Fn(usize, usize) -> f32) -> Image {
    Image {
        width,
        height,
        values: (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect(),
    }
}

#[test]
fn area_resize_by_an_integer_factor_averages_blocks() {
    let src = img(4, 4, |x, y| (y * 4 + x) as f32);
    let out = area_resize(&src, 2, 2).unwrap();
    assert_eq!(out.values, vec![2.5, 4.5, 10.5, 12.5]);
}

#[test]
fn area_resize_preserves_the_mean_for_fractional_factors() {
    let src = img(2048, 2500, |x, y| ((x * 7 + y * 13) % 97) as f32);
    let mean = src.values.iter().map(|&v| f64::from(v)).sum::<f64>() / src.values.len() as f64;
    let out = area_resize(&src, 256, 256).unwrap();
    let m2 = out.values.iter().map(|&v| f64::from(v)).sum::<f64>() / out.values.len() as f64;
    assert!((mean - m2).abs() < 1e-2, "{mean} vs {m2}");
    let up = area_resize(&img(3, 3, |x, _| x as f32), 7, 5).unwrap();
    assert_eq!(up.values.len(), 35);
    assert!(up.values.iter().all(|v| (0.0..=2.0).contains(v)));
}

#[test]
fn fixed_window_maps_centre_to_half_and_clamps() {
    let w = Window::Fixed {
        center: 40.0,
        width: 80.0,
    };
    assert_eq!(
        w.apply(&[-1000.0, 0.0, 40.0, 80.0, 3000.0]).unwrap(),
        vec![0.0, 0.0, 0.5, 1.0, 1.0]
    );
}

#[test]
fn percentile_window_ignores_outliers() {
    let mut values: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    values[0] = -1e9;
    values[999] = 1e9;
    let out = Window::Percentile {
        low: 1.0,
        high: 99.0,
    }
    .apply(&values)
    .unwrap();
    assert_eq!(out[0], 0.0);
    assert_eq!(out[999], 1.0);
    assert!((out[500] - 0.5).abs() < 0.01);
}

#[test]
fn a_flat_or_unreadable_image_is_an_error_not_a_blank_input() {
    let w = Window::Percentile {
        low: 0.5,
        high: 99.5,
    };
    assert!(matches!(
        w.apply(&[7.0; 100]),
        Err(PreprocessError::Flat { .. })
    ));
    assert!(matches!(
        w.apply(&[f32::NAN; 100]),
        Err(PreprocessError::Flat { .. })
    ));
    assert!(Window::Fixed {
        center: 40.0,
        width: 80.0
    }
    .apply(&[7.0; 100])
    .is_ok());
}

#[test]
fn pipeline_inverts_monochrome1_and_normalises() {
    let p = Pipeline {
        window: Window::Fixed {
            center: 50.0,
            width: 100.0,
        },
        invert_monochrome1: true,
        rows: 2,
        cols: 2,
        normalize_mean: 0.5,
        normalize_std: 0.25,
    };
    let src = img(4, 4, |_, _| 25.0);
    assert_eq!(p.run(&src, false).unwrap(), vec![-1.0; 4]);
    assert_eq!(p.run(&src, true).unwrap(), vec![1.0; 4]);
}

#[test]
fn bad_inputs_are_errors() {
    let p = Pipeline {
        window: Window::Percentile {
            low: 50.0,
            high: 10.0,
        },
        invert_monochrome1: false,
        rows: 2,
        cols: 2,
        normalize_mean: 0.0,
        normalize_std: 1.0,
    };
    let src = img(2, 2, |_, _| 1.0);
    assert!(matches!(
        p.run(&src, false),
        Err(PreprocessError::Window(_))
    ));
    let p = Pipeline {
        window: Window::Fixed {
            center: 0.0,
            width: 1.0,
        },
        normalize_std: 0.0,
        ..p
    };
    assert_eq!(p.run(&src, false), Err(PreprocessError::Std(0.0)));
    let p = Pipeline {
        normalize_std: 1.0,
        ..p
    };
    let bad = Image {
        width: 3,
        height: 2,
        values: vec![0.0; 5],
    };
    assert!(matches!(
        p.run(&bad, false),
        Err(PreprocessError::Shape { .. })
    ));
}
