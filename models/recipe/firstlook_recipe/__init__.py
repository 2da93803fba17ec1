"""firstlook demo model recipe: teacher, distilled student, export, evaluation.

Synthetic training data from firstlook-phantom only. NOT FOR CLINICAL USE.
"""
