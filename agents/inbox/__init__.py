"""The support inbox: a web page where the team works the human queue (``brand-listener inbox``)."""
