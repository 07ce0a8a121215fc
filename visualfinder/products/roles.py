"""The roles a product-sheet column can play and the ways rows find their images: plain names
with no heavy imports, so that `visualfinder --help` can list them without loading numpy."""

# The product fields of the catalog's `image_meta` table (catalog.records.META_FIELDS is this).
PRODUCT_FIELDS = ("sku", "title", "description", "url", "price")

# Roles a column can play in an import (an explicit mapping, or the one suggested from headers).
IMAGE_ROLE, EXTRA_ROLE, SKIP_ROLE = "image", "extra", "skip"
ROLES = (IMAGE_ROLE, *PRODUCT_FIELDS, "tags", EXTRA_ROLE, SKIP_ROLE)
# How rows name their images: a path (absolute, or relative to the file's or a catalog folder),
# a file name, or an sku equal to the image's file name without extension. "auto": the path
# column if the row has one, else the sku.
MATCH_MODES = ("auto", "path", "name", "sku")
