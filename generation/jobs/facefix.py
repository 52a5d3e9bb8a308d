"""`/facefix` and the Face fix button: find the faces, restore each, paste them back feathered.

Detection and restoration live in `generation.imaging.faces`; this is the job around them. A picture with
no face the detector can see is the user's answer, not a crash: the job ends with a message that
says so and what helps.
"""

from __future__ import annotations

from PIL import Image

from generation.engine import Engine, Tracker
from generation.errors import EngineUserError
from generation.spec import GenerationSpec


def fix_faces(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    from generation.imaging.faces import restore_faces

    image = engine.init_image(spec)
    restorer = engine.tools.face_restorer(spec.face_model)  # first: a missing model is the clearer message
    if spec.face_fidelity is not None and not restorer.takes_fidelity:
        raise EngineUserError(
            f"`--fidelity` is CodeFormer's, and the face model `{restorer.name}` is {restorer.architecture}, which takes "
            "none. Leave `--fidelity` out, or pick a CodeFormer model with `--model`."
        )
    boxes = engine.tools.detector().detect(image)
    if not boxes:
        raise EngineUserError(
            "I found no face in this picture, so there was nothing to fix. Faces smaller than about 32 pixels, "
            "in profile or strongly stylised are hard to detect; try a closer crop."
        )
    tracker.on_progress(0, len(boxes))
    return [restore_faces(image, boxes, restorer, fidelity=spec.face_fidelity, should_stop=tracker.should_stop)]
