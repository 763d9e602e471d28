"""The concept world: a procedural, seeded image world with ground truth for Broden's six
concept categories (scene, material, object, part, colour, texture).

It stands in for ImageNet (fine-grained classification: subtypes of object types, on scene
backgrounds that correlate with the type) and for Broden (a probe set for Network Dissection,
written in the exact Broden layout). Every classification image also has a ground-truth saliency
map (object region and subtype-discriminative region, :mod:`kdinterp.world.saliency`). See
:func:`kdinterp.world.generate.generate_world`, ``world.json`` and ``docs/concept_world.md``.
"""
