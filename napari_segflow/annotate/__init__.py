"""The napari side of a session, without Qt: which layers hold the video, the user's annotation and the
results; what the user painted; the jobs that buttons start; progress with rate and ETA. The dock widget
in ``napari_segflow._qt`` only forwards to ``Annotator``."""
