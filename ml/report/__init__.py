"""The HTML report for CS leads and the figures drawn for it and for the model directory."""
