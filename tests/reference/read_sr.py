#!/usr/bin/env python3
"""Reads a firstlook SR with an independent stack (pydicom + highdicom) and
prints what it says as JSON: observer, algorithm, and per measurement group
(TID 1501, or TID 1410 for a located finding) the finding, its qualitative
evaluation, the score, the threshold, the referenced source and heatmap
instances, and the image region with the image it is selected from.

usage: read_sr.py SR_FILE"""
import json
import sys

import highdicom as hd
import pydicom


def code(c):
    return None if c is None else {"value": c.value, "scheme": c.scheme_designator, "meaning": c.meaning}


def main():
    ds = pydicom.dcmread(sys.argv[1])
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    content = sr.content
    out = {"sop_instance_uid": ds.SOPInstanceUID, "study_uid": ds.StudyInstanceUID,
           "verification": ds.VerificationFlag, "completion": ds.CompletionFlag,
           "observers": [], "groups": []}
    for obs in content.get_observer_contexts():
        attrs = obs.observer_identifying_attributes
        out["observers"].append({"type": code(obs.observer_type),
                                 "uid": getattr(attrs, "uid", None),
                                 "name": getattr(attrs, "name", None)})
    out["image_library"] = [
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for entry in content[0].ContentSequence if entry.ConceptNameCodeSequence[0].CodeValue == "111028"
        for group in entry.ContentSequence
        for item in group.ContentSequence if item.ValueType == "IMAGE"
    ]
    groups = content.get_image_measurement_groups() + content.get_planar_roi_measurement_groups()
    for g in groups:
        text = {}
        for item in g[0].ContentSequence:
            if item.ValueType == "TEXT":
                text.setdefault(item.ConceptNameCodeSequence[0].CodeValue, []).append(item.TextValue)
        group = {"tracking_identifier": g.tracking_identifier,
                 "finding": code(g.finding_type),
                 "algorithm": {"name": text.get("111001", [None])[0],
                               "version": text.get("111003", [None])[0],
                               "parameters": text.get("111002", [])},
                 "evaluations": [], "measurements": [], "images": [], "region": None}
        roi = getattr(g, "roi", None)
        if roi is not None:
            source = roi.ContentSequence[0]
            group["region"] = {"graphic_type": roi.graphic_type.value,
                               "points": roi.value.tolist(),
                               "relationship": source.RelationshipType,
                               "image": source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID}
        for q in g.get_qualitative_evaluations():
            group["evaluations"].append({"name": code(q.name), "value": code(q.value)})
        for m in g.get_measurements():
            group["measurements"].append({"name": code(m.name), "value": m.value, "unit": code(m.unit)})
        for item in g[0].ContentSequence:
            if item.ValueType == "IMAGE":
                group["images"].append({"concept": item.ConceptNameCodeSequence[0].CodeValue,
                                        "uid": item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID})
        out["groups"].append(group)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
