// Placeholder console bundle; the real one is built from console/src with `make console`.
document.querySelector(".placeholder")?.replaceChildren(
  document.createTextNode("Placeholder console bundle: build the real one with `make console`."),
);
