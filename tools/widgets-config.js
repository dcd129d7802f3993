// Loaded between require.js and embed-amd.js (see nb_ipywidgets_js in _config.yml).
// embed-amd.js finds its assets (Font Awesome files) next to the URL of its AMD module
// "@jupyter-widgets/html-manager/dist/libembed-amd", which RequireJS would resolve against
// the page's folder (<page dir>/@jupyter-widgets/html-manager/dist/, a 404). Map that
// module path to the folder of this file, where tools/fetch_widget_js.sh put the assets.
(function () {
  var script = document.currentScript;
  if (!script || !window.require) return;
  var here = script.src.replace(/[?#].*$/, "").replace(/\/[^\/]*$/, "");
  window.__jupyter_widgets_assets_path__ = here + "/";
  window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": here } });
})();
