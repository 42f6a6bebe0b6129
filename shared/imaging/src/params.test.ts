import { describe, expect, it } from 'vitest';
import { clipRegion, fitInside, parseQuality, parseRenderedQuery, parseViewport, parseWindow, renderedMediaType } from './params.ts';

describe('rendered query parameters (PS3.18 §8.3.5.1)', () => {
  it('window=center,width[,function]', () => {
    expect(parseWindow('40,400')).toEqual({ center: 40, width: 400, function: 'LINEAR' });
    expect(parseWindow('-600, 1500, sigmoid')).toEqual({ center: -600, width: 1500, function: 'SIGMOID' });
    expect(() => parseWindow('40')).toThrow(/center,width/);
    expect(() => parseWindow('40,0')).toThrow(/greater than 0/);
    expect(() => parseWindow('40,400,CUBIC')).toThrow(/LINEAR/);
    expect(() => parseWindow('a,b')).toThrow(/numbers/);
  });
  it('viewport=vw,vh[,sx,sy,sw,sh]', () => {
    expect(parseViewport('256,128')).toEqual({ viewport: { width: 256, height: 128 } });
    expect(parseViewport('64,64,10,20,-30,40')).toEqual({ viewport: { width: 64, height: 64 }, region: { x: 10, y: 20, width: -30, height: 40 } });
    expect(() => parseViewport('0,10')).toThrow(/1 to/);
    expect(() => parseViewport('10,10,1,2')).toThrow(/vw,vh/);
    expect(() => parseViewport('100000,10')).toThrow(/1 to/);
  });
  it('quality 1..100', () => {
    expect(parseQuality('75')).toBe(75);
    expect(() => parseQuality('0')).toThrow();
    expect(() => parseQuality('101')).toThrow();
    expect(() => parseQuality('50.5')).toThrow();
  });
  it('media type from Accept: jpeg for wildcards, 406 for others', () => {
    expect(renderedMediaType(['*/*'])).toBe('image/jpeg');
    expect(renderedMediaType(['image/png', 'image/jpeg'])).toBe('image/png');
    expect(renderedMediaType(['image/gif', 'image/*'])).toBe('image/jpeg');
    expect(() => renderedMediaType(['application/dicom'])).toThrow(/image\/jpeg or image\/png/);
  });
  it('the accept query parameter overrides the header; unknown parameters are a 400', () => {
    expect(parseRenderedQuery({ accept: 'image/png' }, ['image/jpeg']).mediaType).toBe('image/png');
    expect(parseRenderedQuery({ quality: '50', annotation: 'patient,technique' }, ['*/*'])).toMatchObject({ quality: 50, mediaType: 'image/jpeg' });
    expect(() => parseRenderedQuery({ windw: '1,2' }, ['*/*'])).toThrow(/unknown query parameter windw/);
    expect(() => parseRenderedQuery({ quality: ['1', '2'] }, ['*/*'])).toThrow(/once/);
    expect(() => parseRenderedQuery({ annotation: 'everything' }, ['*/*'])).toThrow(/annotation/);
  });
});

describe('geometry', () => {
  it('fits inside the viewport keeping the aspect ratio', () => {
    expect(fitInside(512, 512, { width: 128, height: 64 })).toEqual({ width: 64, height: 64 });
    expect(fitInside(640, 480, { width: 128, height: 128 })).toEqual({ width: 128, height: 96 });
    expect(fitInside(10, 50, { width: 200, height: 200 })).toEqual({ width: 40, height: 200 });
    expect(fitInside(3000, 1, { width: 10, height: 10 })).toEqual({ width: 10, height: 1 });
    expect(fitInside(300, 200)).toEqual({ width: 300, height: 200 });
  });
  it('clips regions to the frame and separates flips', () => {
    expect(clipRegion({ x: 10, y: 10, width: 100, height: 50 }, 64, 64)).toEqual({ left: 10, top: 10, width: 54, height: 50, flipX: false, flipY: false });
    expect(clipRegion({ x: 64, y: 0, width: -32, height: 16 }, 64, 64)).toEqual({ left: 32, top: 0, width: 32, height: 16, flipX: true, flipY: false });
    expect(() => clipRegion({ x: 100, y: 0, width: 10, height: 10 }, 64, 64)).toThrow(/outside/);
  });
});
