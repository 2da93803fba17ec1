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
        channels: vec![Window::Fixed {
            center: 50.0,
            width: 100.0,
        }],
        invert_monochrome1: true,
        rows: 2,
        cols: 2,
        letterbox: false,
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
        channels: vec![Window::Percentile {
            low: 50.0,
            high: 10.0,
        }],
        invert_monochrome1: false,
        rows: 2,
        cols: 2,
        letterbox: false,
        normalize_mean: 0.0,
        normalize_std: 1.0,
    };
    let src = img(2, 2, |_, _| 1.0);
    assert!(matches!(
        p.run(&src, false),
        Err(PreprocessError::Window(_))
    ));
    let p = Pipeline {
        channels: vec![Window::Fixed {
            center: 0.0,
            width: 1.0,
        }],
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

#[test]
fn enlarging_is_bilinear_between_pixel_centres() {
    let src = img(2, 1, |x, _| x as f32 * 4.0);
    let out = resize(&src, 4, 1).unwrap();
    // Centres of 4 outputs over 2 inputs sit at -0.25, 0.25, 0.75, 1.25.
    assert_eq!(out.values, vec![0.0, 1.0, 3.0, 4.0]);
    // Shrinking one axis and enlarging the other: area on one, bilinear on the other.
    let src = img(4, 2, |x, y| (x + 10 * y) as f32);
    let out = resize(&src, 2, 4).unwrap();
    assert_eq!(out.values.len(), 8);
    assert_eq!(&out.values[..2], &[0.5, 2.5]);
    assert_eq!(&out.values[6..], &[10.5, 12.5]);
}

#[test]
fn letterbox_keeps_the_aspect_and_pads_with_black() {
    let p = Pipeline {
        channels: vec![Window::Fixed {
            center: 0.5,
            width: 1.0,
        }],
        invert_monochrome1: true,
        rows: 4,
        cols: 4,
        letterbox: true,
        normalize_mean: 0.0,
        normalize_std: 1.0,
    };
    // 8 wide, 4 high: lands as 4 × 2 in rows 1-2.
    let src = img(8, 4, |_, _| 1.0);
    let out = p.unit(&src, false).unwrap();
    let rows: Vec<&[f32]> = out.chunks(4).collect();
    assert_eq!(rows, [[0.0; 4], [1.0; 4], [1.0; 4], [0.0; 4]]);
    // MONOCHROME1 inverts the image, not the padding.
    let out = p.unit(&src, true).unwrap();
    assert_eq!(out, vec![0.0; 16]);
    let src = img(8, 4, |_, _| 0.0);
    let out = p.unit(&src, true).unwrap();
    assert_eq!(&out[4..12], &[1.0; 8]);
    assert_eq!(&out[..4], &[0.0; 4]);
}

#[test]
fn channels_stack_one_window_each() {
    let p = Pipeline {
        channels: vec![
            Window::Fixed {
                center: 40.0,
                width: 80.0,
            },
            Window::Fixed {
                center: 80.0,
                width: 200.0,
            },
            Window::Fixed {
                center: 600.0,
                width: 2800.0,
            },
        ],
        invert_monochrome1: false,
        rows: 1,
        cols: 2,
        letterbox: false,
        normalize_mean: 0.0,
        normalize_std: 1.0,
    };
    let src = img(2, 1, |x, _| if x == 0 { 40.0 } else { 1000.0 });
    let out = p.run(&src, false).unwrap();
    assert_eq!(out.len(), 6);
    assert_eq!(&out[..2], &[0.5, 1.0]);
    assert!((out[2] - 0.3).abs() < 1e-6 && out[3] == 1.0, "{out:?}");
    assert!((out[4] - (40.0 + 800.0) / 2800.0).abs() < 1e-6, "{out:?}");
}

#[test]
fn dicom_linear_sigmoid_and_lut_windows_follow_ps3_3() {
    let linear = Window::Linear {
        center: 2048.0,
        width: 4096.0,
    };
    let out = linear.apply(&[0.0, 1.0, 2047.5, 4095.0, 5000.0]).unwrap();
    // LINEAR: x <= c - 0.5 - (w-1)/2 → 0; x > c - 0.5 + (w-1)/2 → 1.
    assert_eq!(out[0], 0.0);
    assert!((out[1] - 1.0 / 4095.0).abs() < 1e-6);
    assert!((out[2] - 0.5).abs() < 1e-6);
    assert_eq!(out[3], 1.0);
    assert_eq!(out[4], 1.0);
    let sigmoid = Window::Sigmoid {
        center: 100.0,
        width: 50.0,
    };
    let out = sigmoid.apply(&[100.0, 150.0, -1e9]).unwrap();
    assert!((out[0] - 0.5).abs() < 1e-6);
    assert!((out[1] - 1.0 / (1.0 + (-4.0f32).exp())).abs() < 1e-6);
    assert_eq!(out[2], 0.0);
    let lut = Window::Lut {
        first_mapped: -2.0,
        values: vec![0.0, 0.25, 0.5, 1.0],
    };
    assert_eq!(
        lut.apply(&[-10.0, -2.0, -0.5, 0.0, 1.0, 99.0]).unwrap(),
        vec![0.0, 0.0, 0.25, 0.5, 1.0, 1.0]
    );
    assert!(Window::Linear {
        center: 0.0,
        width: 0.5
    }
    .validate()
    .is_err());
}

#[test]
fn two_percentiles_at_once_match_one_at_a_time() {
    let mut state = 7u32;
    let mut noise = move || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        state >> 16
    };
    let n = 100_003;
    let cases: Vec<(&str, Vec<f32>)> = vec![
        ("noise", (0..n).map(|_| noise() as f32 / 7.0).collect()),
        ("few levels", (0..n).map(|_| (noise() % 3) as f32).collect()),
        ("constant", vec![5.0; n]),
        ("sorted", (0..n).map(|i| i as f32).collect()),
        (
            "periodic",
            (0..n)
                .map(|i| if i % 97 == 0 { 1e6 } else { (i % 13) as f32 })
                .collect(),
        ),
        (
            "with NaN and inf",
            (0..n)
                .map(|i| match i % 10 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    _ => noise() as f32,
                })
                .collect(),
        ),
        ("small", (0..100).map(|_| noise() as f32).collect()),
    ];
    for (name, values) in cases {
        let finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        for (low, high) in [
            (0.5, 99.5),
            (0.0, 100.0),
            (10.0, 10.05),
            (50.0, 50.0),
            (1.0, 2.0),
        ] {
            let (a, b) = percentiles(&values, low, high);
            assert_eq!(a, percentile(&mut finite.clone(), low), "{name} {low}");
            assert_eq!(b, percentile(&mut finite.clone(), high), "{name} {high}");
        }
    }
    assert_eq!(percentiles(&[3.0], 1.0, 99.0), (3.0, 3.0));
    assert_eq!(percentiles(&[], 1.0, 99.0), (0.0, 0.0));
}

#[test]
fn stored_rows_resized_straight_match_the_decoded_image() {
    // A source that yields each row on demand must give what its decoded
    // image gives, on one thread and on several.
    struct Ramp(usize, usize);
    impl Rows for Ramp {
        fn width(&self) -> usize {
            self.0
        }
        fn height(&self) -> usize {
            self.1
        }
        fn add_row(&self, y: usize, weight: f32, dst: &mut [f32]) {
            for (x, d) in dst.iter_mut().enumerate() {
                *d += ((x * 3 + y * 5) % 251) as f32 * weight;
            }
        }
    }
    for (w, h, cols, rows) in [(37, 23, 8, 5), (1500, 1400, 64, 48), (10, 10, 30, 20)] {
        let src = Ramp(w, h);
        let image = src.to_image();
        assert_eq!(image.values.len(), w * h);
        assert_eq!(
            resize(&src, cols, rows).unwrap(),
            resize(&image, cols, rows).unwrap()
        );
    }
}
