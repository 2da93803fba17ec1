//! `manifest.toml`: what the model is, what it may see, how its input is made,
//! what its outputs mean, and the size and sha256 of every other file.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::container::check_path;
use super::{MANIFEST, SIGNATURE};

/// `manifest.toml` may not be larger than this.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// The manifest format this build reads and writes.
pub const FORMAT: u32 = 1;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ManifestError {
    #[error("manifest.toml is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("manifest.toml is not UTF-8")]
    NotUtf8,
    #[error("manifest.toml: {0}")]
    Parse(String),
    #[error("format = {0} is not supported; this build reads format = 1")]
    UnsupportedFormat(u32),
    #[error("exactly one file with role \"model\" is required, found {count}")]
    ModelFiles { count: usize },
    #[error("at most one file with role \"model_int8\" is allowed, found {count}")]
    Int8Files { count: usize },
    #[error(
        "finding {id:?}: output_index {index} is out of range; the logits output has {logits}"
    )]
    OutputIndexOutOfRange {
        id: String,
        index: usize,
        logits: usize,
    },
    #[error("findings {first:?} and {second:?} both use output_index {index}")]
    DuplicateOutputIndex {
        first: String,
        second: String,
        index: usize,
    },
    #[error("finding id {id:?} appears more than once")]
    DuplicateFinding { id: String },
    #[error("{field} = {path:?} is not listed in [[files]] with role \"{role}\"")]
    NotListed {
        field: String,
        path: String,
        role: &'static str,
    },
    #[error(
        "preprocessing route {route}: resize = {resize:?} but the input is {input:?} (rows, cols)"
    )]
    ResizeMismatch {
        route: usize,
        resize: [u64; 2],
        input: [u64; 2],
    },
    #[error(
        "{field}: {value:?} is not an uppercase DICOM code (A-Z, 0-9, _ and space, at most 16)"
    )]
    BadCode { field: String, value: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    /// Whether the model may be used for clinical decisions. The demo's is false.
    pub clinical_use: bool,
    pub intended_use: String,
    pub training_data: String,
    /// Path of the model card among `files`.
    pub model_card: String,
    pub applicability: Applicability,
    /// One per route; the first whose modalities match an image is used.
    pub preprocessing: Vec<Preprocessing>,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
    pub findings: Vec<Finding>,
    pub aggregation: Aggregation,
    pub reference_stats: ReferenceStats,
    pub golden: Golden,
    /// Every file in the bundle besides the manifest and the signature.
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

/// Which images this model may see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applicability {
    pub modalities: Vec<String>,
    /// Empty means any body part.
    pub body_parts: Vec<String>,
    /// SOP Class UIDs the model may see; empty means any image class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sop_classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    pub modalities: Vec<String>,
    pub window: WindowKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_high: Option<f64>,
    /// In modality units (HU for CT) after the modality LUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    /// For `window = "dicom"`: which of the image's VOI views (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voi_index: Option<u32>,
    /// Channels 1.. of the input, one window each (channel 0 is the window
    /// above), e.g. subdural and bone windows beside the brain window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_channels: Vec<ChannelWindow>,
    pub invert_monochrome1: bool,
    /// Rows, columns; area-averaged down, bilinear up.
    pub resize: [u64; 2],
    /// Keep the aspect ratio and pad with black instead of stretching.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub letterbox: bool,
    pub normalize_mean: f64,
    pub normalize_std: f64,
    /// ViewPosition values this route takes (e.g. PA, AP); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub view_positions: Vec<String>,
    /// Photometric Interpretations this route takes; empty means MONOCHROME1 and MONOCHROME2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub photometric: Vec<String>,
    /// Smallest Rows and Columns an image must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<[u64; 2]>,
    /// Pixel spacing (mm, either axis) an image must lie within, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_spacing_mm: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Percentile,
    Fixed,
    /// The image's own VOI: its VOI LUT Sequence, else its window pair
    /// under its VOI LUT function (LINEAR, LINEAR_EXACT, SIGMOID).
    Dicom,
}

/// One channel's window: the same keys as a route's own window (repeated there
/// rather than flattened: serde's `flatten` does not work with `deny_unknown_fields`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelWindow {
    pub window: WindowKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voi_index: Option<u32>,
}

/// A validated channel's window, with the parameters its kind needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    Percentile { low: f64, high: f64 },
    Fixed { center: f64, width: f64 },
    Dicom { index: u32 },
}

/// Why a route cannot make a pipeline for an image.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RouteError {
    #[error("channel {0}: the window lacks its parameters")]
    Incomplete(usize),
    #[error(
        "channel {channel}: the image has no VOI view {index} (no window centre/width or VOI LUT)"
    )]
    NoVoi { channel: usize, index: u32 },
}

impl ChannelWindow {
    /// The window with the parameters its kind needs; `None` when they are
    /// missing (never for a validated manifest).
    pub fn window(&self) -> Option<Window> {
        match self.window {
            WindowKind::Percentile => Some(Window::Percentile {
                low: self.percentile_low?,
                high: self.percentile_high?,
            }),
            WindowKind::Fixed => Some(Window::Fixed {
                center: self.center?,
                width: self.width?,
            }),
            WindowKind::Dicom => Some(Window::Dicom {
                index: self.voi_index.unwrap_or(0),
            }),
        }
    }

    /// Checks that the window has exactly the parameters its kind needs.
    fn validate(&self, field: &dyn Fn(&str) -> String) -> Result<(), ManifestError> {
        let has_percentiles = self.percentile_low.is_some() || self.percentile_high.is_some();
        let has_fixed = self.center.is_some() || self.width.is_some();
        match self.window {
            WindowKind::Percentile => {
                if has_fixed || self.voi_index.is_some() {
                    return Err(invalid(
                        field("window"),
                        "center, width and voi_index do not belong to window = \"percentile\"",
                    ));
                }
                let (Some(low), Some(high)) = (self.percentile_low, self.percentile_high) else {
                    return Err(invalid(
                        field("window"),
                        "window = \"percentile\" needs percentile_low and percentile_high",
                    ));
                };
                if !((0.0..100.0).contains(&low) && low < high && high <= 100.0) {
                    return Err(invalid(
                        field("percentile_low"),
                        "need 0 <= percentile_low < percentile_high <= 100",
                    ));
                }
            }
            WindowKind::Fixed => {
                if has_percentiles || self.voi_index.is_some() {
                    return Err(invalid(
                        field("window"),
                        "percentile_low, percentile_high and voi_index do not belong to window = \"fixed\"",
                    ));
                }
                let (Some(center), Some(width)) = (self.center, self.width) else {
                    return Err(invalid(
                        field("window"),
                        "window = \"fixed\" needs center and width",
                    ));
                };
                if !(center.is_finite() && width.is_finite() && width > 0.0) {
                    return Err(invalid(
                        field("width"),
                        "center must be finite and width finite and > 0",
                    ));
                }
            }
            WindowKind::Dicom => {
                if has_percentiles || has_fixed {
                    return Err(invalid(
                        field("window"),
                        "window = \"dicom\" takes its window from the image; only voi_index belongs to it",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Preprocessing {
    /// Channel 0's window, as the route's own keys give it.
    pub fn first_channel(&self) -> ChannelWindow {
        ChannelWindow {
            window: self.window,
            percentile_low: self.percentile_low,
            percentile_high: self.percentile_high,
            center: self.center,
            width: self.width,
            voi_index: self.voi_index,
        }
    }

    /// Every channel's window, in order.
    pub fn channels(&self) -> Vec<ChannelWindow> {
        std::iter::once(self.first_channel())
            .chain(self.extra_channels.iter().cloned())
            .collect()
    }

    /// The kernels' pipeline for this route and an image's VOI module.
    pub fn pipeline_for(
        &self,
        voi: &firstlook_kernels::dicom::Voi,
    ) -> Result<firstlook_kernels::preprocess::Pipeline, RouteError> {
        use firstlook_kernels::preprocess::Window as K;
        let channels = self
            .channels()
            .iter()
            .enumerate()
            .map(
                |(i, c)| match c.window().ok_or(RouteError::Incomplete(i))? {
                    Window::Percentile { low, high } => Ok(K::Percentile {
                        low: low as f32,
                        high: high as f32,
                    }),
                    Window::Fixed { center, width } => Ok(K::Fixed {
                        center: center as f32,
                        width: width as f32,
                    }),
                    Window::Dicom { index } => voi
                        .window(index as usize)
                        .ok_or(RouteError::NoVoi { channel: i, index }),
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        Ok(firstlook_kernels::preprocess::Pipeline {
            channels,
            invert_monochrome1: self.invert_monochrome1,
            rows: self.resize[0] as usize,
            cols: self.resize[1] as usize,
            letterbox: self.letterbox,
            normalize_mean: self.normalize_mean as f32,
            normalize_std: self.normalize_std as f32,
        })
    }

    /// The pipeline of a route whose windows do not depend on the image;
    /// `None` for one that takes the image's VOI.
    pub fn pipeline(&self) -> Option<firstlook_kernels::preprocess::Pipeline> {
        self.pipeline_for(&firstlook_kernels::dicom::Voi::default())
            .ok()
    }

    /// Channel 0's window.
    pub fn window(&self) -> Option<Window> {
        self.first_channel().window()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: DType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    F32,
    F16,
    I8,
    U8,
    I32,
    I64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Unique, `[a-z_]+`.
    pub id: String,
    /// Index into the logits and the heatmap channels.
    pub output_index: usize,
    pub display: String,
    pub modalities: Vec<String>,
    pub urgent: bool,
    pub code: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radlex: Option<Code>,
    /// On the logit.
    pub threshold: f64,
    pub operating_point: OperatingPoint,
}

/// A coded concept, e.g. SNOMED CT or RadLex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub scheme: String,
    pub value: String,
    pub meaning: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatingPoint {
    pub sensitivity: f64,
    pub specificity: f64,
    pub chosen_on: String,
}

/// How the slices of a series become one series score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    pub rule: AggregationRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregationRule {
    Max,
    TopKMean,
    /// Positive when `k` consecutive slices (in position order) are over the
    /// threshold: the series score is the best window's lowest slice score.
    ConsecutiveK,
}

/// Statistics of the preprocessed model input over the training set, for
/// drift checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceStats {
    pub mean: f64,
    pub std: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram_edges: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    pub tolerance_abs: f64,
    /// Tolerance for the INT8 model against its own expected outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_abs_int8: Option<f64>,
    pub cases: Vec<GoldenCase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenCase {
    pub input: String,
    /// One per output, in the order of `outputs`.
    pub expected: Vec<String>,
    /// The INT8 model's outputs for the same input; required when the
    /// bundle has an INT8 model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_int8: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub role: Role,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Model,
    ModelInt8,
    Golden,
    ModelCard,
    Other,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Model => "model",
            Role::ModelInt8 => "model_int8",
            Role::Golden => "golden",
            Role::ModelCard => "model_card",
            Role::Other => "other",
        }
    }
}

impl Manifest {
    /// Parses and validates a complete manifest, as found in a bundle.
    pub fn from_toml_bytes(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let manifest = Self::parse_unvalidated(bytes)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Parses without validating: a staging manifest has no `[[files]]` yet.
    pub(crate) fn parse_unvalidated(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
        toml::from_str(text).map_err(|e| ManifestError::Parse(one_line(text, &e)))
    }

    pub(crate) fn to_toml(&self) -> Result<String, ManifestError> {
        toml::to_string(self).map_err(|e| ManifestError::Parse(e.to_string()))
    }

    /// The entry of `path` in `files`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The file with role `model`.
    pub fn model_file(&self) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == Role::Model)
    }

    pub fn int8_model_file(&self) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == Role::ModelInt8)
    }

    /// The number of logits, i.e. the last dimension of the output named
    /// `logits`.
    pub fn logits_len(&self) -> usize {
        self.outputs
            .iter()
            .find(|t| t.name == "logits")
            .and_then(|t| t.shape.last())
            .map_or(0, |&n| n as usize)
    }

    /// The preprocessing route for images of `modality`.
    pub fn route_for(&self, modality: &str) -> Option<&Preprocessing> {
        self.route_index(modality).map(|i| &self.preprocessing[i])
    }

    /// Where [`Manifest::route_for`]'s route is in `preprocessing`.
    pub fn route_index(&self, modality: &str) -> Option<usize> {
        self.preprocessing
            .iter()
            .position(|p| p.modalities.iter().any(|m| m == modality))
    }

    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.id == id)
    }

    /// Every check beyond the TOML's shape; the first failure is returned.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT {
            return Err(ManifestError::UnsupportedFormat(self.format));
        }
        check_label("name", &self.name)?;
        check_label("version", &self.version)?;
        check_text("intended_use", &self.intended_use)?;
        check_text("training_data", &self.training_data)?;
        self.validate_files()?;
        self.require_listed("model_card", &self.model_card, Role::ModelCard)?;

        let modalities = &self.applicability.modalities;
        if modalities.is_empty() {
            return Err(invalid("applicability.modalities", "must not be empty"));
        }
        check_codes("applicability.modalities", modalities)?;
        check_codes("applicability.body_parts", &self.applicability.body_parts)?;

        let (channels, input) = self.validate_tensors()?;
        self.validate_preprocessing(channels, input)?;
        self.validate_findings()?;
        self.validate_aggregation()?;
        self.reference_stats.validate()?;
        self.validate_golden()
    }

    fn validate_files(&self) -> Result<(), ManifestError> {
        let mut seen = HashSet::new();
        for f in &self.files {
            let field = format!("files.{}", f.path);
            check_path(&f.path).map_err(|reason| invalid(&field, reason))?;
            if f.path == MANIFEST || f.path == SIGNATURE {
                return Err(invalid(&field, "this name is reserved"));
            }
            if !seen.insert(f.path.as_str()) {
                return Err(invalid(&field, "listed more than once"));
            }
            let hex_ok = f.sha256.len() == 64
                && f.sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !hex_ok {
                return Err(invalid(&field, "sha256 must be 64 lowercase hex digits"));
            }
        }
        let count = |role| self.files.iter().filter(|f| f.role == role).count();
        match count(Role::Model) {
            1 => {}
            count => return Err(ManifestError::ModelFiles { count }),
        }
        match count(Role::ModelInt8) {
            0 | 1 => Ok(()),
            count => Err(ManifestError::Int8Files { count }),
        }
    }

    fn require_listed(&self, field: &str, path: &str, role: Role) -> Result<(), ManifestError> {
        match self.file(path) {
            Some(f) if f.role == role => Ok(()),
            _ => Err(ManifestError::NotListed {
                field: field.to_owned(),
                path: path.to_owned(),
                role: role.as_str(),
            }),
        }
    }

    /// Returns the input's channels and (rows, cols).
    fn validate_tensors(&self) -> Result<(u64, [u64; 2]), ManifestError> {
        let mut names = HashSet::new();
        for (kind, tensors) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            for t in tensors {
                let field = format!("{kind}.{}", t.name);
                check_label(&field, &t.name)?;
                if !names.insert(t.name.as_str()) {
                    return Err(invalid(field, "tensor names must be unique"));
                }
                if t.shape.is_empty() || t.shape.contains(&0) {
                    return Err(invalid(field, "shape must have dimensions, none of them 0"));
                }
            }
        }
        let [input] = self.inputs.as_slice() else {
            return Err(invalid("inputs", "exactly one input is required"));
        };
        let &[_, channels, rows, cols] = input.shape.as_slice() else {
            return Err(invalid(
                format!("inputs.{}", input.name),
                "shape must be [batch, channels, rows, cols]",
            ));
        };
        let Some(logits) = self.outputs.iter().find(|t| t.name == "logits") else {
            return Err(invalid("outputs", "an output named \"logits\" is required"));
        };
        let &[_, n] = logits.shape.as_slice() else {
            return Err(invalid("outputs.logits", "shape must be [batch, findings]"));
        };
        if let Some(heatmap) = self.outputs.iter().find(|t| t.name == "heatmap") {
            match heatmap.shape.as_slice() {
                &[_, channels, _, _] if channels == n => {}
                _ => {
                    return Err(invalid(
                        "outputs.heatmap",
                        format!("shape must be [batch, {n}, rows, cols], one channel per logit"),
                    ))
                }
            }
        }
        Ok((channels, [rows, cols]))
    }

    fn validate_preprocessing(&self, channels: u64, input: [u64; 2]) -> Result<(), ManifestError> {
        if self.preprocessing.is_empty() {
            return Err(invalid("preprocessing", "at least one route is required"));
        }
        for (i, p) in self.preprocessing.iter().enumerate() {
            let field = |name: &str| format!("preprocessing[{i}].{name}");
            if p.modalities.is_empty() {
                return Err(invalid(field("modalities"), "must not be empty"));
            }
            check_codes(&field("modalities"), &p.modalities)?;
            self.require_applicable(&field("modalities"), &p.modalities)?;
            for (c, channel) in p.channels().iter().enumerate() {
                let name = |key: &str| {
                    if c == 0 {
                        field(key)
                    } else {
                        field(&format!("extra_channels[{}].{key}", c - 1))
                    }
                };
                channel.validate(&name)?;
            }
            if p.channels().len() as u64 != channels {
                return Err(invalid(
                    field("extra_channels"),
                    format!(
                        "the route makes {} channel(s) but the input has {channels}",
                        p.channels().len()
                    ),
                ));
            }
            if p.resize != input {
                return Err(ManifestError::ResizeMismatch {
                    route: i,
                    resize: p.resize,
                    input,
                });
            }
            if !p.normalize_mean.is_finite() {
                return Err(invalid(field("normalize_mean"), "must be finite"));
            }
            if !(p.normalize_std.is_finite() && p.normalize_std > 0.0) {
                return Err(invalid(field("normalize_std"), "must be finite and > 0"));
            }
            check_codes(&field("view_positions"), &p.view_positions)?;
            check_codes(&field("photometric"), &p.photometric)?;
            if let Some(bad) = p
                .photometric
                .iter()
                .find(|v| !matches!(v.as_str(), "MONOCHROME1" | "MONOCHROME2"))
            {
                return Err(invalid(
                    field("photometric"),
                    format!("{bad:?}: only MONOCHROME1 and MONOCHROME2 are decoded"),
                ));
            }
            if p.min_size.is_some_and(|[r, c]| r == 0 || c == 0) {
                return Err(invalid(field("min_size"), "rows and columns must be > 0"));
            }
            if let Some([lo, hi]) = p.pixel_spacing_mm {
                if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
                    return Err(invalid(
                        field("pixel_spacing_mm"),
                        "need finite 0 < low <= high (mm)",
                    ));
                }
            }
        }
        for m in &self.applicability.modalities {
            if self.route_for(m).is_none() {
                return Err(invalid(
                    "preprocessing",
                    format!("no route for applicable modality {m:?}"),
                ));
            }
        }
        Ok(())
    }

    fn require_applicable(&self, field: &str, modalities: &[String]) -> Result<(), ManifestError> {
        match modalities
            .iter()
            .find(|m| !self.applicability.modalities.contains(m))
        {
            Some(m) => Err(invalid(
                field,
                format!("{m:?} is not in applicability.modalities"),
            )),
            None => Ok(()),
        }
    }

    fn validate_findings(&self) -> Result<(), ManifestError> {
        if self.findings.is_empty() {
            return Err(invalid("findings", "at least one finding is required"));
        }
        let logits = self.logits_len();
        for (i, f) in self.findings.iter().enumerate() {
            let field = |name: &str| format!("findings.{}.{name}", f.id);
            let id_ok =
                !f.id.is_empty() && f.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !id_ok {
                return Err(invalid(format!("findings[{i}].id"), "must match [a-z_]+"));
            }
            if let Some(other) = self.findings[..i].iter().find(|o| o.id == f.id) {
                return Err(ManifestError::DuplicateFinding {
                    id: other.id.clone(),
                });
            }
            if f.output_index >= logits {
                return Err(ManifestError::OutputIndexOutOfRange {
                    id: f.id.clone(),
                    index: f.output_index,
                    logits,
                });
            }
            if let Some(other) = self.findings[..i]
                .iter()
                .find(|o| o.output_index == f.output_index)
            {
                return Err(ManifestError::DuplicateOutputIndex {
                    first: other.id.clone(),
                    second: f.id.clone(),
                    index: f.output_index,
                });
            }
            check_text(&field("display"), &f.display)?;
            if f.modalities.is_empty() {
                return Err(invalid(field("modalities"), "must not be empty"));
            }
            check_codes(&field("modalities"), &f.modalities)?;
            self.require_applicable(&field("modalities"), &f.modalities)?;
            for (name, code) in [("code", Some(&f.code)), ("radlex", f.radlex.as_ref())] {
                if let Some(code) = code {
                    check_text(&field(&format!("{name}.scheme")), &code.scheme)?;
                    check_text(&field(&format!("{name}.value")), &code.value)?;
                    check_text(&field(&format!("{name}.meaning")), &code.meaning)?;
                }
            }
            if !f.threshold.is_finite() {
                return Err(invalid(field("threshold"), "must be finite"));
            }
            let op = &f.operating_point;
            for (name, v) in [
                ("sensitivity", op.sensitivity),
                ("specificity", op.specificity),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(invalid(
                        field(&format!("operating_point.{name}")),
                        "must be between 0 and 1",
                    ));
                }
            }
            check_text(&field("operating_point.chosen_on"), &op.chosen_on)?;
        }
        Ok(())
    }

    fn validate_aggregation(&self) -> Result<(), ManifestError> {
        match (self.aggregation.rule, self.aggregation.k) {
            (AggregationRule::Max, None) => Ok(()),
            (AggregationRule::Max, Some(_)) => Err(invalid(
                "aggregation.k",
                "k belongs to rule = \"top_k_mean\"",
            )),
            (AggregationRule::TopKMean, Some(k)) if k >= 1 => Ok(()),
            (AggregationRule::TopKMean, _) => Err(invalid(
                "aggregation.k",
                "rule = \"top_k_mean\" needs k >= 1",
            )),
            (AggregationRule::ConsecutiveK, Some(k)) if k >= 1 => Ok(()),
            (AggregationRule::ConsecutiveK, _) => Err(invalid(
                "aggregation.k",
                "rule = \"consecutive_k\" needs k >= 1",
            )),
        }
    }

    fn validate_golden(&self) -> Result<(), ManifestError> {
        let g = &self.golden;
        if !(g.tolerance_abs.is_finite() && g.tolerance_abs >= 0.0) {
            return Err(invalid("golden.tolerance_abs", "must be finite and >= 0"));
        }
        if g.cases.is_empty() {
            return Err(invalid("golden.cases", "at least one case is required"));
        }
        for (i, case) in g.cases.iter().enumerate() {
            self.require_listed(
                &format!("golden.cases[{i}].input"),
                &case.input,
                Role::Golden,
            )?;
            if case.expected.len() != self.outputs.len() {
                return Err(invalid(
                    format!("golden.cases[{i}].expected"),
                    format!("needs one file per output ({})", self.outputs.len()),
                ));
            }
            for path in &case.expected {
                self.require_listed(&format!("golden.cases[{i}].expected"), path, Role::Golden)?;
            }
            if self.int8_model_file().is_some() || !case.expected_int8.is_empty() {
                if case.expected_int8.len() != self.outputs.len() {
                    return Err(invalid(
                        format!("golden.cases[{i}].expected_int8"),
                        format!(
                            "an INT8 model needs its own expected outputs, one file per output ({})",
                            self.outputs.len()
                        ),
                    ));
                }
                for path in &case.expected_int8 {
                    self.require_listed(
                        &format!("golden.cases[{i}].expected_int8"),
                        path,
                        Role::Golden,
                    )?;
                }
            }
        }
        if self.int8_model_file().is_some() {
            match g.tolerance_abs_int8 {
                Some(t) if t.is_finite() && t >= 0.0 => {}
                _ => {
                    return Err(invalid(
                        "golden.tolerance_abs_int8",
                        "required with an INT8 model; must be finite and >= 0",
                    ))
                }
            }
        }
        Ok(())
    }
}

impl ReferenceStats {
    fn validate(&self) -> Result<(), ManifestError> {
        if !self.mean.is_finite() {
            return Err(invalid("reference_stats.mean", "must be finite"));
        }
        if !(self.std.is_finite() && self.std > 0.0) {
            return Err(invalid("reference_stats.std", "must be finite and > 0"));
        }
        match (&self.histogram_edges, &self.histogram) {
            (None, None) => Ok(()),
            (Some(edges), Some(hist)) => {
                if hist.is_empty() || edges.len() != hist.len() + 1 {
                    return Err(invalid(
                        "reference_stats.histogram_edges",
                        "needs one more value than histogram, which must not be empty",
                    ));
                }
                let increasing =
                    edges.iter().all(|e| e.is_finite()) && edges.windows(2).all(|w| w[0] < w[1]);
                if !increasing {
                    return Err(invalid(
                        "reference_stats.histogram_edges",
                        "must be finite and strictly increasing",
                    ));
                }
                let sum: f64 = hist.iter().sum();
                if !hist.iter().all(|h| h.is_finite() && *h >= 0.0) || (sum - 1.0).abs() > 1e-3 {
                    return Err(invalid(
                        "reference_stats.histogram",
                        "values must be >= 0 and sum to 1",
                    ));
                }
                Ok(())
            }
            _ => Err(invalid(
                "reference_stats",
                "histogram and histogram_edges go together",
            )),
        }
    }
}

/// `line L, column C: message`, so that a reason fits on one line.
pub(crate) fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Names and versions: printable ASCII without spaces or quotes.
fn check_label(field: &str, value: &str) -> Result<(), ManifestError> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+');
    if value.is_empty() || value.len() > 64 || !value.bytes().all(ok) {
        return Err(invalid(
            field,
            "must be 1 to 64 characters of A-Z a-z 0-9 . _ - +",
        ));
    }
    Ok(())
}

fn check_text(field: &str, value: &str) -> Result<(), ManifestError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(())
}

fn check_codes(field: &str, values: &[String]) -> Result<(), ManifestError> {
    let ok = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b' ';
    for v in values {
        if v.is_empty() || v.len() > 16 || !v.bytes().all(ok) || v.starts_with(' ') {
            return Err(ManifestError::BadCode {
                field: field.to_owned(),
                value: v.clone(),
            });
        }
    }
    Ok(())
}
