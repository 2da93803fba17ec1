//! SR content items (PS3.3 C.17.3) and the coded concepts they use, as
//! data set items.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// A coded concept: (value, scheme, meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl Code {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Code {
        Code {
            value: value.into(),
            scheme: scheme.into(),
            meaning: meaning.into(),
        }
    }

    pub fn dcm(value: &str, meaning: &str) -> Code {
        Code::new(value, "DCM", meaning)
    }

    pub fn item(&self) -> InMemDicomObject {
        let mut item = InMemDicomObject::new_empty();
        item.put_str(tags::CODE_VALUE, VR::SH, &self.value);
        item.put_str(tags::CODING_SCHEME_DESIGNATOR, VR::SH, &self.scheme);
        item.put_str(tags::CODE_MEANING, VR::LO, truncate(&self.meaning, 64));
        item
    }
}

/// LO and SH hold at most 64 and 16 characters.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

pub fn sequence(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// Relationship of a content item to its parent.
#[derive(Debug, Clone, Copy)]
pub enum Rel {
    Contains,
    HasObsContext,
    HasConceptMod,
    HasAcqContext,
    SelectedFrom,
}

impl Rel {
    fn as_str(self) -> &'static str {
        match self {
            Rel::Contains => "CONTAINS",
            Rel::HasObsContext => "HAS OBS CONTEXT",
            Rel::HasConceptMod => "HAS CONCEPT MOD",
            Rel::HasAcqContext => "HAS ACQ CONTEXT",
            Rel::SelectedFrom => "SELECTED FROM",
        }
    }
}

/// A content item under construction.
pub struct Item(InMemDicomObject);

impl Item {
    fn new(rel: Rel, value_type: &str, name: &Code) -> Item {
        let mut item = Item::unnamed(rel, value_type);
        sequence(
            &mut item.0,
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![name.item()],
        );
        item
    }

    fn unnamed(rel: Rel, value_type: &str) -> Item {
        let mut obj = InMemDicomObject::new_empty();
        obj.put_str(tags::RELATIONSHIP_TYPE, VR::CS, rel.as_str());
        obj.put_str(tags::VALUE_TYPE, VR::CS, value_type);
        Item(obj)
    }

    pub fn container(rel: Rel, name: &Code, children: Vec<Item>) -> Item {
        let mut item = Item::new(rel, "CONTAINER", name);
        item.0
            .put_str(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
        item.children(children)
    }

    /// A container whose content follows template `tid` of DCMR.
    pub fn template_container(rel: Rel, name: &Code, tid: &str, children: Vec<Item>) -> Item {
        let mut item = Item::container(rel, name, Vec::new());
        sequence(
            &mut item.0,
            tags::CONTENT_TEMPLATE_SEQUENCE,
            vec![template(tid)],
        );
        item.children(children)
    }

    pub fn code(rel: Rel, name: &Code, value: &Code) -> Item {
        let mut item = Item::new(rel, "CODE", name);
        sequence(&mut item.0, tags::CONCEPT_CODE_SEQUENCE, vec![value.item()]);
        item
    }

    pub fn text(rel: Rel, name: &Code, value: &str) -> Item {
        let mut item = Item::new(rel, "TEXT", name);
        item.0.put_str(tags::TEXT_VALUE, VR::UT, value);
        item
    }

    pub fn uidref(rel: Rel, name: &Code, uid: &str) -> Item {
        let mut item = Item::new(rel, "UIDREF", name);
        item.0.put_str(tags::UID, VR::UI, uid);
        item
    }

    pub fn num(rel: Rel, name: &Code, value: f64, unit: &Code) -> Item {
        let mut item = Item::new(rel, "NUM", name);
        let mut measured = InMemDicomObject::new_empty();
        sequence(
            &mut measured,
            tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
            vec![unit.item()],
        );
        measured.put_str(tags::NUMERIC_VALUE, VR::DS, decimal_string(value));
        measured.put(DataElement::new(
            tags::FLOATING_POINT_VALUE,
            VR::FD,
            PrimitiveValue::from(value),
        ));
        sequence(&mut item.0, tags::MEASURED_VALUE_SEQUENCE, vec![measured]);
        item
    }

    pub fn image(rel: Rel, name: &Code, sop_class: &str, sop_instance: &str) -> Item {
        let mut item = Item::new(rel, "IMAGE", name);
        sequence(
            &mut item.0,
            tags::REFERENCED_SOP_SEQUENCE,
            vec![sop_reference(sop_class, sop_instance)],
        );
        item
    }

    /// A closed polyline around `rect` (column, row of its top left and
    /// bottom right corners, in image pixel coordinates), selected from
    /// `frame` of the image (1-based; `None` for a single-frame image).
    pub fn rectangle(
        rel: Rel,
        name: &Code,
        rect: [f32; 4],
        sop_class: &str,
        sop_instance: &str,
        frame: Option<u32>,
    ) -> Item {
        let mut item = Item::new(rel, "SCOORD", name);
        let [x0, y0, x1, y1] = rect;
        let points = vec![x0, y0, x1, y0, x1, y1, x0, y1, x0, y0];
        item.0.put(DataElement::new(
            tags::GRAPHIC_DATA,
            VR::FL,
            PrimitiveValue::F32(points.into()),
        ));
        item.0.put_str(tags::GRAPHIC_TYPE, VR::CS, "POLYLINE");
        let mut reference = sop_reference(sop_class, sop_instance);
        if let Some(frame) = frame {
            reference.put_str(tags::REFERENCED_FRAME_NUMBER, VR::IS, frame.to_string());
        }
        let mut image = Item::unnamed(Rel::SelectedFrom, "IMAGE");
        sequence(&mut image.0, tags::REFERENCED_SOP_SEQUENCE, vec![reference]);
        item.children(vec![image])
    }

    pub fn children(mut self, children: Vec<Item>) -> Item {
        if !children.is_empty() {
            add_children(&mut self.0, children);
        }
        self
    }

    pub fn into_inner(self) -> InMemDicomObject {
        self.0
    }
}

/// Appends `children` as the Content Sequence of `obj`.
pub fn add_children(obj: &mut InMemDicomObject, children: Vec<Item>) {
    let items = children.into_iter().map(Item::into_inner).collect();
    sequence(obj, tags::CONTENT_SEQUENCE, items);
}

pub fn template(tid: &str) -> InMemDicomObject {
    let mut t = InMemDicomObject::new_empty();
    t.put_str(tags::MAPPING_RESOURCE, VR::CS, "DCMR");
    t.put_str(tags::TEMPLATE_IDENTIFIER, VR::CS, tid);
    t
}

pub fn sop_reference(sop_class: &str, sop_instance: &str) -> InMemDicomObject {
    let mut r = InMemDicomObject::new_empty();
    r.put_str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, sop_class);
    r.put_str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, sop_instance);
    r
}

/// A DS value: at most 16 characters.
pub fn decimal_string(v: f64) -> String {
    for precision in (0..=8).rev() {
        let s = format!("{v:.precision$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.3e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(obj: &InMemDicomObject, tag: Tag) -> String {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn a_rectangle_is_a_closed_polyline_selected_from_its_image() {
        let item = Item::rectangle(
            Rel::Contains,
            &Code::dcm("111030", "Image Region"),
            [10.0, 20.0, 110.5, 220.0],
            "1.2.840.10008.5.1.4.1.1.2.1",
            "1.2.3.4",
            Some(7),
        )
        .into_inner();
        assert_eq!(text(&item, tags::VALUE_TYPE), "SCOORD");
        assert_eq!(text(&item, tags::GRAPHIC_TYPE), "POLYLINE");
        let points = item
            .element(tags::GRAPHIC_DATA)
            .unwrap()
            .to_multi_float32()
            .unwrap();
        assert_eq!(
            points,
            [10.0, 20.0, 110.5, 20.0, 110.5, 220.0, 10.0, 220.0, 10.0, 20.0]
        );
        let children = item
            .element(tags::CONTENT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(children.len(), 1);
        let image = &children[0];
        assert_eq!(text(image, tags::RELATIONSHIP_TYPE), "SELECTED FROM");
        assert_eq!(text(image, tags::VALUE_TYPE), "IMAGE");
        assert!(image.element(tags::CONCEPT_NAME_CODE_SEQUENCE).is_err());
        let reference = &image
            .element(tags::REFERENCED_SOP_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(
            text(reference, tags::REFERENCED_SOP_INSTANCE_UID),
            "1.2.3.4"
        );
        assert_eq!(text(reference, tags::REFERENCED_FRAME_NUMBER), "7");
    }
}
