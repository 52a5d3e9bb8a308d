"""Structure-guided drawing: ControlNet and Instruct Pix2Pix. The control types, their
preprocessors and which ControlNet serves a job (`catalog`, torch-free), QR codes (`qr`,
torch-free), the maps (`preprocess`: canny, xdog, depth, controlnet-aux's annotators), a job's
controls ready for its passes (`inputs`: arguments, the control modes), the ControlNet and
Instruct Pix2Pix models, loaded once and kept (`nets`), and the built-in tiny ones (`tiny`). The
job kinds that use them are in `generation.jobs` (every kind that diffuses takes controls; /edit
is `jobs.instruct`). May import `generation.spec`, `generation.errors`, `generation.models` and
`config`; `preprocess` reaches the engine only through the object it is handed."""
