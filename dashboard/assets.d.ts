// esbuild bundles the styles a module imports into app.css
declare module '*.css'
