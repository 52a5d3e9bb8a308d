"""Commands that draw or change pictures: /imagine (and remix by reply), the edits under a
picture (/upscale, /vary, /zoom, /pan, /facefix in `edits`), /inpaint, /control, /edit,
/describe (with `metadata/`, which reads other tools' parameters from a file), /enhance, and
"Imagine this" under suggested prompts (`candidates`).

May import: `commands.frame`, `commands.jobs`; and `commands.clips.video2video`, because a
reply to a clip with a prompt restyles the clip instead of drawing a picture; and
`commands.explore.draft`, because `/imagine --draft` draws the prompt as a draft.
"""
